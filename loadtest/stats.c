/* Run statistics and the per-second timeline (see stats.h). */
#include "stats.h"
#include "common/log.h"

#include <stdlib.h>
#include <string.h>

static const char *const fs__kind_names[FS_KIND_N] = {"get", "reserve", "confirm", "cancel"};
static const char *const fs__code_names[FS_CODE_N] = {
    "ok", "sold_out", "limit_exceeded", "launch_not_open", "not_found", "reservation_expired",
    "reservation_cancelled", "reservation_confirmed", "unavailable", "overloaded", "rate_limited",
    "invalid_request", "unauthorized", "other", "transport_error", "timeout"};
static const char *const fs__outcome_names[FS_OUT_N] = {
    "held", "confirmed", "cancelled", "abandoned", "sold_out", "limit_exceeded",
    "launch_not_open", "expired", "retried", "gave_up", "failed"};

const char *fs_kind_name(fs_kind_t k)
{
    return (unsigned)k < FS_KIND_N ? fs__kind_names[k] : "?";
}

const char *fs_code_name(fs_code_t c)
{
    return (unsigned)c < FS_CODE_N ? fs__code_names[c] : "?";
}

const char *fs_outcome_name(fs_outcome_t o)
{
    return (unsigned)o < FS_OUT_N ? fs__outcome_names[o] : "?";
}

fs_code_t fs_code_parse(const char *s, size_t n)
{
    for (int i = FS_CODE_SOLD_OUT; i < FS_CODE_OTHER; i++) {
        if (strlen(fs__code_names[i]) == n && memcmp(fs__code_names[i], s, n) == 0)
            return (fs_code_t)i;
    }
    return FS_CODE_OTHER;
}

void fs_stats_init(fs_stats_t *s)
{
    memset(s, 0, sizeof *s);
    for (int k = 0; k < FS_KIND_N; k++) {
        fs_hist_init(&s->kind[k].total);
        fs_hist_init(&s->kind[k].win);
    }
}

void fs_stats_record(fs_stats_t *s, fs_kind_t k, uint64_t latency_ns, int status, fs_code_t code)
{
    fs_kind_stats_t *ks = &s->kind[k];
    ks->codes[code]++;
    if (status > 0) {
        ks->answered++;
        ks->win_answered++;
        ks->status[status < FS_STATUS_MAX ? status : 0]++;
        fs_hist_record(&ks->total, latency_ns);
        fs_hist_record(&ks->win, latency_ns);
    } else {
        ks->win_failed++;
    }
}

void fs_stats_outcome(fs_stats_t *s, fs_outcome_t o)
{
    s->outcomes[o]++;
    s->win_outcomes[o]++;
}

void fs_stats_merge(fs_stats_t *dst, const fs_stats_t *src)
{
    for (int k = 0; k < FS_KIND_N; k++) {
        fs_kind_stats_t *d = &dst->kind[k];
        const fs_kind_stats_t *s = &src->kind[k];
        fs_hist_merge(&d->total, &s->total);
        d->answered += s->answered;
        for (int i = 0; i < FS_STATUS_MAX; i++) d->status[i] += s->status[i];
        for (int i = 0; i < FS_CODE_N; i++) d->codes[i] += s->codes[i];
    }
    dst->offered += src->offered;
    dst->sent += src->sent;
    for (int i = 0; i < FS_OUT_N; i++) dst->outcomes[i] += src->outcomes[i];
}

uint64_t fs_stats_answered(const fs_stats_t *s)
{
    uint64_t n = 0;
    for (int k = 0; k < FS_KIND_N; k++) n += s->kind[k].answered;
    return n;
}

uint64_t fs_stats_failed(const fs_stats_t *s)
{
    uint64_t n = 0;
    for (int k = 0; k < FS_KIND_N; k++)
        n += s->kind[k].codes[FS_CODE_TRANSPORT] + s->kind[k].codes[FS_CODE_TIMEOUT];
    return n;
}

/* ---- timeline ---- */

void fs_timeline_init(fs_timeline_t *tl, int nthreads)
{
    memset(tl, 0, sizeof *tl);
    pthread_mutex_init(&tl->mu, NULL);
    tl->nthreads = nthreads;
    for (int i = 0; i < FS_TL_RING; i++) {
        tl->ring[i].sec = -1;
        fs_stats_init(&tl->ring[i].acc);
    }
}

void fs_timeline_free(fs_timeline_t *tl)
{
    pthread_mutex_destroy(&tl->mu);
    free(tl->points);
    tl->points = NULL;
    tl->n = tl->cap = 0;
}

static void fs__reset_window(fs_stats_t *s)
{
    for (int k = 0; k < FS_KIND_N; k++) {
        fs_kind_stats_t *ks = &s->kind[k];
        if (ks->win.count) fs_hist_init(&ks->win);
        ks->win_answered = ks->win_failed = 0;
    }
    s->win_offered = 0;
    memset(s->win_outcomes, 0, sizeof s->win_outcomes);
}

void fs_timeline_push(fs_timeline_t *tl, long sec, double len_s, fs_stats_t *s)
{
    pthread_mutex_lock(&tl->mu);
    int slot = (int)(sec % FS_TL_RING);
    if (tl->ring[slot].sec != sec) {
        /* a stale slot would be a thread more than FS_TL_RING seconds behind: drop it */
        tl->ring[slot].sec = sec;
        tl->ring[slot].contributors = 0;
        fs__reset_window(&tl->ring[slot].acc);
    }
    fs_stats_t *a = &tl->ring[slot].acc;
    for (int k = 0; k < FS_KIND_N; k++) {
        fs_hist_merge(&a->kind[k].win, &s->kind[k].win);
        a->kind[k].win_answered += s->kind[k].win_answered;
        a->kind[k].win_failed += s->kind[k].win_failed;
    }
    a->win_offered += s->win_offered;
    for (int i = 0; i < FS_OUT_N; i++) a->win_outcomes[i] += s->win_outcomes[i];
    fs__reset_window(s);
    if (++tl->ring[slot].contributors == tl->nthreads) {
        if (tl->n == tl->cap) {
            tl->cap = tl->cap ? tl->cap * 2 : 64;
            tl->points = fs_xrealloc(tl->points, tl->cap * sizeof *tl->points);
        }
        fs_tl_point_t *p = &tl->points[tl->n++];
        memset(p, 0, sizeof *p);
        if (len_s <= 0) len_s = 1;
        p->t = (double)sec + len_s;
        p->offered = (double)a->win_offered / len_s;
        uint64_t answered = 0;
        for (int k = 0; k < FS_KIND_N; k++) {
            const fs_hist_t *h = &a->kind[k].win;
            answered += a->kind[k].win_answered;
            p->failed += a->kind[k].win_failed;
            p->n[k] = a->kind[k].win_answered;
            p->p50[k] = (double)fs_hist_percentile(h, 50) / 1e6;
            p->p90[k] = (double)fs_hist_percentile(h, 90) / 1e6;
            p->p99[k] = (double)fs_hist_percentile(h, 99) / 1e6;
            p->max[k] = (double)h->max / 1e6;
        }
        p->achieved = (double)answered / len_s;
        memcpy(p->outcomes, a->win_outcomes, sizeof p->outcomes);
        tl->ring[slot].sec = -1;
    }
    pthread_mutex_unlock(&tl->mu);
}

int fs_timeline_last(fs_timeline_t *tl, fs_tl_point_t *out)
{
    pthread_mutex_lock(&tl->mu);
    int have = tl->n > 0;
    if (have) *out = tl->points[tl->n - 1];
    pthread_mutex_unlock(&tl->mu);
    return have;
}
