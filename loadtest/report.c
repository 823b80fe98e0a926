/* Terminal summary and JSON document of a run (see report.h); the HTML page is in report_html.c. */
#include "report.h"
#include "flashsale/error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static double fs__ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

json_t *fs_report_latency_json(const fs_hist_t *h)
{
    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f}",
                     "p50", fs__ms(fs_hist_percentile(h, 50)),
                     "p90", fs__ms(fs_hist_percentile(h, 90)),
                     "p99", fs__ms(fs_hist_percentile(h, 99)),
                     "p999", fs__ms(fs_hist_percentile(h, 99.9)),
                     "max", fs__ms(h->count ? h->max : 0),
                     "min", fs__ms(h->count ? h->min : 0),
                     "mean", fs_hist_mean(h) / 1e6);
}

static json_t *fs__status_json(const uint64_t *status)
{
    json_t *o = json_object();
    for (int i = 0; i < FS_STATUS_MAX; i++) {
        if (!status[i]) continue;
        char k[8];
        snprintf(k, sizeof k, "%d", i);
        json_object_set_new(o, k, json_integer((json_int_t)status[i]));
    }
    return o;
}

static json_t *fs__codes_json(const uint64_t *codes)
{
    json_t *o = json_object();
    for (int i = 1; i < FS_CODE_N; i++)
        if (codes[i]) json_object_set_new(o, fs_code_name((fs_code_t)i), json_integer((json_int_t)codes[i]));
    return o;
}

json_t *fs_report_base(const char *mode, const fs_stats_t *s, const fs_timeline_t *tl,
                       double elapsed_s)
{
    fs_hist_t *all = malloc(sizeof *all);
    fs_hist_init(all);
    uint64_t status[FS_STATUS_MAX] = {0}, codes[FS_CODE_N] = {0};
    json_t *kinds = json_object();
    for (int k = 0; k < FS_KIND_N; k++) {
        const fs_kind_stats_t *ks = &s->kind[k];
        uint64_t failed = ks->codes[FS_CODE_TRANSPORT] + ks->codes[FS_CODE_TIMEOUT];
        if (!ks->answered && !failed) continue;
        fs_hist_merge(all, &ks->total);
        for (int i = 0; i < FS_STATUS_MAX; i++) status[i] += ks->status[i];
        for (int i = 0; i < FS_CODE_N; i++) codes[i] += ks->codes[i];
        json_object_set_new(kinds, fs_kind_name((fs_kind_t)k),
                            json_pack("{s:I, s:I, s:f, s:o, s:o, s:o}",
                                      "requests", (json_int_t)ks->answered,
                                      "failed", (json_int_t)failed,
                                      "requests_per_sec", elapsed_s > 0 ? (double)ks->answered / elapsed_s : 0.0,
                                      "latency_ms", fs_report_latency_json(&ks->total),
                                      "status", fs__status_json(ks->status),
                                      "errors", fs__codes_json(ks->codes)));
    }
    uint64_t answered = fs_stats_answered(s);
    json_t *doc = json_pack("{s:s, s:I, s:I, s:f, s:f, s:o, s:o, s:o, s:o}",
                            "mode", mode,
                            "requests", (json_int_t)answered,
                            "failed", (json_int_t)fs_stats_failed(s),
                            "duration_s", elapsed_s,
                            "requests_per_sec", elapsed_s > 0 ? (double)answered / elapsed_s : 0.0,
                            "latency_ms", fs_report_latency_json(all),
                            "status", fs__status_json(status),
                            "errors", fs__codes_json(codes),
                            "kinds", kinds);
    free(all);
    json_t *outs = json_object();
    for (int i = 0; i < FS_OUT_N; i++)
        if (s->outcomes[i]) json_object_set_new(outs, fs_outcome_name((fs_outcome_t)i), json_integer((json_int_t)s->outcomes[i]));
    json_object_set_new(doc, "outcomes", outs);

    json_t *t = json_array();
    for (size_t i = 0; tl && i < tl->n; i++) {
        const fs_tl_point_t *p = &tl->points[i];
        json_t *lat = json_object();
        for (int k = 0; k < FS_KIND_N; k++) {
            if (!p->n[k]) continue;
            json_object_set_new(lat, fs_kind_name((fs_kind_t)k),
                                json_pack("{s:I, s:f, s:f, s:f, s:f}", "n", (json_int_t)p->n[k],
                                          "p50", p->p50[k], "p90", p->p90[k], "p99", p->p99[k],
                                          "max", p->max[k]));
        }
        json_t *o = json_object();
        for (int j = 0; j < FS_OUT_N; j++)
            if (p->outcomes[j]) json_object_set_new(o, fs_outcome_name((fs_outcome_t)j), json_integer((json_int_t)p->outcomes[j]));
        json_array_append_new(t, json_pack("{s:f, s:f, s:f, s:I, s:o, s:o}", "t", p->t,
                                           "offered", p->offered, "achieved", p->achieved,
                                           "failed", (json_int_t)p->failed, "latency_ms", lat,
                                           "outcomes", o));
    }
    json_object_set_new(doc, "timeline", t);
    return doc;
}

void fs_report_print_stats(FILE *f, const fs_stats_t *s, double elapsed_s)
{
    uint64_t answered = fs_stats_answered(s), failed = fs_stats_failed(s);
    fprintf(f, "  requests     %llu answered in %.2f s = %.1f req/s; %llu without answer\n",
            (unsigned long long)answered, elapsed_s, elapsed_s > 0 ? (double)answered / elapsed_s : 0.0,
            (unsigned long long)failed);
    fprintf(f, "  latency ms   %-8s %10s %9s %9s %9s %9s %9s %9s\n", "kind", "count", "p50",
            "p90", "p99", "p99.9", "max", "mean");
    for (int k = 0; k < FS_KIND_N; k++) {
        const fs_kind_stats_t *ks = &s->kind[k];
        if (!ks->answered) continue;
        const fs_hist_t *h = &ks->total;
        fprintf(f, "               %-8s %10llu %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f\n",
                fs_kind_name((fs_kind_t)k), (unsigned long long)ks->answered,
                fs__ms(fs_hist_percentile(h, 50)), fs__ms(fs_hist_percentile(h, 90)),
                fs__ms(fs_hist_percentile(h, 99)), fs__ms(fs_hist_percentile(h, 99.9)),
                fs__ms(h->max), fs_hist_mean(h) / 1e6);
    }
    for (int k = 0; k < FS_KIND_N; k++) {
        const fs_kind_stats_t *ks = &s->kind[k];
        if (!ks->answered && !ks->codes[FS_CODE_TRANSPORT] && !ks->codes[FS_CODE_TIMEOUT]) continue;
        fprintf(f, "  %-10s   status", fs_kind_name((fs_kind_t)k));
        for (int i = 0; i < FS_STATUS_MAX; i++)
            if (ks->status[i]) fprintf(f, " %d:%llu", i, (unsigned long long)ks->status[i]);
        int any = 0;
        for (int i = 1; i < FS_CODE_N; i++) {
            if (!ks->codes[i]) continue;
            fprintf(f, "%s%s:%llu", any ? " " : "; errors ", fs_code_name((fs_code_t)i),
                    (unsigned long long)ks->codes[i]);
            any = 1;
        }
        fputc('\n', f);
    }
}

int fs_report_write_json(const json_t *doc, const char *path, char *err, size_t errcap)
{
    if (json_dump_file(doc, path, JSON_INDENT(2) | JSON_REAL_PRECISION(8)) != 0) {
        snprintf(err, errcap, "cannot write %s: %s", path, strerror(errno));
        return FS_EIO;
    }
    return FS_OK;
}
