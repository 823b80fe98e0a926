/* Campaign mode's terminal summary and report document (see shop_internal.h, report.h). */
#include "shop_internal.h"
#include "report.h"
#include "flashsale/version.h"

#include <stdio.h>
#include <string.h>

static json_t *fs__profile_json(const fs_campaign_t *c)
{
    json_t *phases = json_array();
    for (size_t i = 0; i < c->profile.n; i++) {
        const fs_rate_phase_t *p = &c->profile.phases[i];
        json_array_append_new(phases, json_pack("{s:s, s:f, s:f, s:f, s:f}", "kind",
                                                fs_phase_kind_name(p->kind), "start_s",
                                                c->profile.start_s[i], "from", p->from, "to",
                                                p->to, "duration_s", p->dur_s));
    }
    return phases;
}

void fs__shop_print_summary(fs__shop_t *s, double elapsed, const fs_verify_out_t *v)
{
    const fs_campaign_t *c = s->c;
    printf("flashsale-load %s campaign \"%s\"\n", FS_VERSION, c->name);
    printf("  server %s, launch %s, %zu SKUs, %lld shoppers, %d connections\n", s->o->server_url,
           s->launch, c->nskus, c->shoppers, c->connections);
    printf("  profile     ");
    for (size_t i = 0; i < c->profile.n; i++) {
        const fs_rate_phase_t *p = &c->profile.phases[i];
        if (p->kind == FS_PHASE_RAMP)
            printf(" ramp %.0f->%.0f/s %.1fs", p->from, p->to, p->dur_s);
        else if (p->kind == FS_PHASE_PAUSE)
            printf(" pause %.1fs", p->dur_s);
        else
            printf(" %s %.0f/s %.1fs", fs_phase_kind_name(p->kind), p->from, p->dur_s);
    }
    printf("; arrivals for %.1f s, opened at %.2f s\n", c->duration_s, s->open_at_s);
    printf("  shoppers     %llu arrived of %llu scheduled; %llu requests unfinished at the end\n",
           (unsigned long long)s->stats.offered, (unsigned long long)s->arrivals,
           (unsigned long long)s->unfinished);
    if (s->late_arrivals)
        printf("  WARNING      the schedule was not kept: %llu arrivals went out more than 100 ms late "
               "(worst %.0f ms); the server (or the connections) could not keep up, and latencies "
               "include that wait\n", (unsigned long long)s->late_arrivals, (double)s->max_lag_ns / 1e6);
    fs_report_print_stats(stdout, &s->stats, elapsed);
    printf("  outcomes    ");
    for (int i = 0; i < FS_OUT_N; i++)
        if (s->stats.outcomes[i]) printf(" %s:%llu", fs_outcome_name((fs_outcome_t)i), (unsigned long long)s->stats.outcomes[i]);
    printf("\n  %-12s %9s %9s %9s %9s %9s %12s %12s\n", "sku", "total", "sold", "held", "available",
           "orders", "1st sold_out", "all sold");
    for (size_t i = 0; i < c->nskus; i++) {
        const fs__sku_state_t *st = &s->sku[i];
        char a[32] = "-", b[32] = "-";
        if (st->first_sold_out_s >= 0) snprintf(a, sizeof a, "%.2fs", st->first_sold_out_s);
        if (st->all_sold_s >= 0) snprintf(b, sizeof b, "%.0fs", st->all_sold_s);
        printf("  %-12s %9lld %9lld %9lld %9lld %9lld %12s %12s\n", c->skus[i].id, st->total, st->sold,
               st->held, st->available, v ? v->stream_orders[i] : st->told_orders, a, b);
    }
    double last = -1;
    for (size_t i = 0; i < c->nskus; i++) {
        if (s->sku[i].first_sold_out_s < 0) {
            last = -1;
            break;
        }
        if (s->sku[i].first_sold_out_s > last) last = s->sku[i].first_sold_out_s;
    }
    if (last >= 0)
        printf("  time to sell out: %.2f s (every SKU answered sold_out by then)\n", last);
    else
        printf("  time to sell out: not every SKU sold out\n");
    if (v) fs_verify_print(stdout, v);
}

json_t *fs__shop_report_doc(fs__shop_t *s, double elapsed, const fs_verify_out_t *v)
{
    const fs_campaign_t *c = s->c;
    const fs_shop_opts_t *o = s->o;
    json_t *doc;
    doc = fs_report_base("campaign", &s->stats, &s->tl, elapsed);
    json_object_set_new(doc, "campaign", json_pack("{s:s, s:s, s:s, s:I, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:i, s:o}",
        "name", c->name, "launch", s->launch, "server", o->server_url,
        "shoppers", (json_int_t)c->shoppers, "connections", c->connections,
        "duration_s", c->duration_s, "drain_s", c->drain_s, "confirm", c->p_confirm,
        "cancel", c->p_cancel, "think_min_s", c->think_min_s, "think_max_s", c->think_max_s,
        "hold_seconds", c->hold_seconds, "profile", fs__profile_json(c)));
    json_object_set_new(doc, "arrivals", json_pack("{s:I, s:I, s:I, s:I, s:f, s:b}", "scheduled", (json_int_t)s->arrivals,
                                                   "arrived", (json_int_t)s->stats.offered,
                                                   "unfinished", (json_int_t)s->unfinished,
                                                   "late_100ms", (json_int_t)s->late_arrivals,
                                                   "max_lag_ms", (double)s->max_lag_ns / 1e6,
                                                   "schedule_kept", s->late_arrivals == 0));
    json_object_set_new(doc, "opened_at_s", json_real(s->open_at_s));
    json_t *skus = json_array();
    double sell_out = -1;
    int all_out = 1;
    for (size_t i = 0; i < c->nskus; i++) {
        const fs__sku_state_t *st = &s->sku[i];
        json_t *k = json_pack("{s:s, s:I, s:i, s:I, s:I, s:I, s:I, s:I, s:I}", "sku", c->skus[i].id,
                              "stock", (json_int_t)c->skus[i].stock, "per_user_limit",
                              c->skus[i].per_user_limit, "total", (json_int_t)st->total,
                              "available", (json_int_t)st->available, "held", (json_int_t)st->held,
                              "sold", (json_int_t)st->sold, "told_orders", (json_int_t)st->told_orders,
                              "told_units", (json_int_t)st->told_units);
        json_object_set_new(k, "first_sold_out_s", st->first_sold_out_s >= 0 ? json_real(st->first_sold_out_s) : json_null());
        json_object_set_new(k, "available_zero_s", st->available_zero_s >= 0 ? json_real(st->available_zero_s) : json_null());
        json_object_set_new(k, "all_sold_s", st->all_sold_s >= 0 ? json_real(st->all_sold_s) : json_null());
        if (v) {
            json_object_set_new(k, "stream_orders", json_integer(v->stream_orders[i]));
            json_object_set_new(k, "stream_units", json_integer(v->stream_units[i]));
        }
        json_array_append_new(skus, k);
        if (st->first_sold_out_s < 0) all_out = 0;
        else if (st->first_sold_out_s > sell_out) sell_out = st->first_sold_out_s;
    }
    json_object_set_new(doc, "skus", skus);
    json_object_set_new(doc, "time_to_sell_out_s", all_out ? json_real(sell_out) : json_null());
    json_object_set_new(doc, "stock_timeline", s->stock_series);
    s->stock_series = NULL;
    if (v) json_object_set_new(doc, "verification", fs_verify_json(v));
    return doc;
}
