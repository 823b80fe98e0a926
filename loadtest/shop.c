/* Campaign mode: shoppers on one libuv loop (see shop.h).
 *
 * Work items ("ops") are reservation attempts, confirms, cancels and their retries. New shoppers
 * arrive by the rate schedule (rate.h) and are created only when a connection is free, so a
 * backlog costs no memory: it is the gap between the schedule and what was sent. Ops that wait
 * for a time (think time, retry backoff) sit in a min-heap; when due they join the ready FIFO.
 * A free connection takes whichever is older: the ready FIFO's head or the next arrival. Every
 * request's latency is measured from the moment its shopper meant to act (the arrival's or the
 * op's intended time), not from when a connection became free.
 *
 * Ownership: ops are allocated here and freed when their shopper is done with them. */
#include "shop_internal.h"
#include "report.h"
#include "common/buf.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "flashsale/error.h"
#include "flashsale/http_client.h"
#include "flashsale/version.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


/* ---- small helpers ---- */

static uint64_t fs__rand(fs__shop_t *s)
{
    /* xorshift64*: reproducible from the campaign's seed */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return s->rng * 2685821657736338717ull;
}

static double fs__unit(fs__shop_t *s)
{
    return (double)(fs__rand(s) >> 11) / 9007199254740992.0;
}

static double fs__elapsed(const fs__shop_t *s, uint64_t ns)
{
    return ns > s->start_ns ? (double)(ns - s->start_ns) / 1e9 : 0.0;
}

static void fs__user(const fs__shop_t *s, uint64_t shopper, char *out, size_t cap)
{
    snprintf(out, cap, "%s%llu", s->c->shopper_prefix, (unsigned long long)shopper);
}

/* ---- the timed heap ---- */

static void fs__heap_push(fs__shop_t *s, uint64_t due, fs__op_t *op)
{
    if (s->heap_len == s->heap_cap) {
        s->heap_cap = s->heap_cap ? s->heap_cap * 2 : 256;
        s->heap = fs_xrealloc(s->heap, s->heap_cap * sizeof *s->heap);
    }
    size_t i = s->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (s->heap[parent].due_ns <= due) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = (fs__timed_t){due, op};
}

static fs__op_t *fs__heap_pop(fs__shop_t *s)
{
    fs__op_t *top = s->heap[0].op;
    fs__timed_t last = s->heap[--s->heap_len];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        uint64_t md = last.due_ns;
        if (l < s->heap_len && s->heap[l].due_ns < md) m = l, md = s->heap[l].due_ns;
        if (r < s->heap_len && s->heap[r].due_ns < md) m = r;
        if (m == i) break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    if (s->heap_len) s->heap[i] = last;
    return top;
}

static void fs__op_free(fs__op_t *op)
{
    free(op->rid);
    free(op);
}

static void fs__ready_push(fs__shop_t *s, fs__op_t *op)
{
    op->next = NULL;
    if (s->ready_tail)
        s->ready_tail->next = op;
    else
        s->ready_head = op;
    s->ready_tail = op;
    s->ready_len++;
}

static fs__op_t *fs__ready_pop(fs__shop_t *s)
{
    fs__op_t *op = s->ready_head;
    s->ready_head = op->next;
    if (!s->ready_head) s->ready_tail = NULL;
    s->ready_len--;
    return op;
}

/* ---- requests ---- */

static void fs__on_answer(void *arg, int err, const fs_http_response_t *r);
static void fs__pump(fs__shop_t *s);

static void fs__send(fs__shop_t *s, fs__conn_t *conn, fs__op_t *op)
{
    char user[200];
    fs__user(s, op->shopper, user, sizeof user);
    fs_buf_t body, path, hdr;
    fs_buf_init(&body);
    fs_buf_init(&path);
    fs_buf_init(&hdr);
    int first = 1;
    fs_buf_putc(&body, '{');
    fs_buf_puts(&hdr, conn->headers);
    switch (op->type) {
    case FS__RESERVE:
        fs_buf_printf(&path, "/v1/launches/%s/reservations", s->launch);
        fs_json_kv_cstr(&body, &first, "sku", s->c->skus[op->sku].id);
        fs_json_kv_cstr(&body, &first, "user_id", user);
        fs_json_kv_i64(&body, &first, "qty", op->qty);
        if (s->c->idempotency) fs_buf_printf(&hdr, "Idempotency-Key: %s\r\n", op->idem);
        break;
    case FS__CONFIRM: {
        char ref[48];
        snprintf(ref, sizeof ref, "load-%llu", (unsigned long long)++s->payment_seq);
        fs_buf_printf(&path, "/v1/reservations/%s/confirm", op->rid);
        fs_json_kv_cstr(&body, &first, "user_id", user);
        fs_json_kv_cstr(&body, &first, "payment_ref", ref);
        break;
    }
    case FS__CANCEL:
        fs_buf_printf(&path, "/v1/reservations/%s/cancel", op->rid);
        fs_json_kv_cstr(&body, &first, "user_id", user);
        break;
    }
    fs_buf_putc(&body, '}');
    conn->op = op;
    s->in_flight++;
    s->stats.sent++;
    fs_http_client_request(conn->client, "POST", path.data, hdr.data, body.data, body.len,
                           fs__on_answer, conn);
    fs_buf_free(&body);
    fs_buf_free(&path);
    fs_buf_free(&hdr);
}

static fs__op_t *fs__new_arrival(fs__shop_t *s, uint64_t k, uint64_t intended)
{
    const fs_campaign_t *c = s->c;
    fs__op_t *op = fs_xcalloc(1, sizeof *op);
    op->type = FS__RESERVE;
    op->intended_ns = intended;
    op->shopper = c->pick == FS_PICK_SEQUENTIAL ? k % (uint64_t)c->shoppers
                                                : fs__rand(s) % (uint64_t)c->shoppers;
    double w = fs__unit(s) * s->wsum;
    op->sku = (int)c->nskus - 1;
    for (size_t i = 0; i < c->nskus; i++) {
        if (w < c->skus[i].weight) {
            op->sku = (int)i;
            break;
        }
        w -= c->skus[i].weight;
    }
    op->qty = c->qty_min + (int)(fs__rand(s) % (uint64_t)(c->qty_max - c->qty_min + 1));
    snprintf(op->idem, sizeof op->idem, "fsload-%llx-%llu", (unsigned long long)c->seed,
             (unsigned long long)k);
    s->stats.offered++;
    return op;
}

static uint64_t fs__arrival_ns(fs__shop_t *s, uint64_t k)
{
    if (k >= s->arrivals) return 0;
    double t = fs_rate_arrival(&s->c->profile, k);
    if (t < 0) return 0;
    uint64_t ns = s->start_ns + (uint64_t)(t * 1e9);
    return ns < s->arrivals_end_ns ? ns : 0;
}

static void fs__later(fs__shop_t *s, fs__op_t *op, double delay_s)
{
    uint64_t due = uv_hrtime() + (uint64_t)(delay_s * 1e9);
    op->intended_ns = due;
    fs__heap_push(s, due, op);
}

/* Schedules a retry with exponential backoff and jitter, or gives up. */
static void fs__retry(fs__shop_t *s, fs__op_t *op, int retry_after_s)
{
    const fs_campaign_t *c = s->c;
    if (op->attempt >= c->max_retries) {
        fs_stats_outcome(&s->stats, FS_OUT_GAVE_UP);
        fs__op_free(op);
        return;
    }
    double d = c->backoff_s * pow(2.0, op->attempt);
    if (d > c->backoff_max_s) d = c->backoff_max_s;
    d *= 0.5 + 0.5 * fs__unit(s);
    /* honour Retry-After, but never wait longer than backoff_max */
    if (retry_after_s > 0) {
        double ra = retry_after_s < c->backoff_max_s ? (double)retry_after_s : c->backoff_max_s;
        if (ra > d) d = ra;
    }
    op->attempt++;
    fs_stats_outcome(&s->stats, FS_OUT_RETRIED);
    fs__later(s, op, d);
}

static fs_code_t fs__error_code(json_t *doc)
{
    json_t *e = json_object_get(doc, "error");
    if (!json_is_string(e)) return FS_CODE_OTHER;
    return fs_code_parse(json_string_value(e), json_string_length(e));
}

static const char *fs__jstr(json_t *doc, const char *k)
{
    json_t *v = json_object_get(doc, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static fs_kind_t fs__kind(fs__op_type_t t)
{
    return t == FS__RESERVE ? FS_KIND_RESERVE : t == FS__CONFIRM ? FS_KIND_CONFIRM : FS_KIND_CANCEL;
}

/* What a shopper does after a 201. */
static void fs__after_hold(fs__shop_t *s, fs__op_t *op, const char *rid)
{
    const fs_campaign_t *c = s->c;
    fs_stats_outcome(&s->stats, FS_OUT_HELD);
    int created;
    int64_t *v = fs_smap_upsert(&s->reserved, rid, strlen(rid), &created);
    *v = op->sku;
    double u = fs__unit(s);
    if (u >= c->p_confirm + c->p_cancel) {
        fs_stats_outcome(&s->stats, FS_OUT_ABANDONED);
        fs__op_free(op);
        return;
    }
    op->type = u < c->p_confirm ? FS__CONFIRM : FS__CANCEL;
    op->attempt = 0;
    op->rid = fs_xstrndup(rid, strlen(rid));
    fs__later(s, op, c->think_min_s + (c->think_max_s - c->think_min_s) * fs__unit(s));
}

static void fs__handle(fs__shop_t *s, fs__op_t *op, int err, const fs_http_response_t *r)
{
    uint64_t now = uv_hrtime();
    fs_kind_t kind = fs__kind(op->type);
    if (err) {
        fs_stats_record(&s->stats, kind, now - op->intended_ns, 0,
                        err == FS_ETIMEDOUT ? FS_CODE_TIMEOUT : FS_CODE_TRANSPORT);
        fs__retry(s, op, -1);
        return;
    }
    json_t *doc = json_loadb(r->body, r->body_len, 0, NULL);
    fs_code_t code = FS_CODE_NONE;
    if (r->status >= 400) code = doc ? fs__error_code(doc) : FS_CODE_OTHER;
    if (r->status == 429) code = FS_CODE_RATE_LIMITED;
    fs_stats_record(&s->stats, kind, now - op->intended_ns, r->status, code);
    if (r->status == 429 || r->status == 503) {
        fs__retry(s, op, r->retry_after_s);
        json_decref(doc);
        return;
    }
    switch (op->type) {
    case FS__RESERVE: {
        const char *rid = doc ? fs__jstr(doc, "reservation_id") : NULL;
        if (r->status == 201 && rid) {
            fs__after_hold(s, op, rid);
        } else if (code == FS_CODE_SOLD_OUT) {
            if (s->sku[op->sku].first_sold_out_s < 0) s->sku[op->sku].first_sold_out_s = fs__elapsed(s, now);
            fs_stats_outcome(&s->stats, FS_OUT_SOLD_OUT);
            fs__op_free(op);
        } else if (code == FS_CODE_LIMIT_EXCEEDED) {
            fs_stats_outcome(&s->stats, FS_OUT_LIMIT);
            fs__op_free(op);
        } else if (code == FS_CODE_LAUNCH_NOT_OPEN && s->c->retry_not_open) {
            fs__retry(s, op, -1);
        } else if (code == FS_CODE_LAUNCH_NOT_OPEN) {
            fs_stats_outcome(&s->stats, FS_OUT_NOT_OPEN);
            fs__op_free(op);
        } else {
            fs_stats_outcome(&s->stats, FS_OUT_FAILED);
            fs__op_free(op);
        }
        break;
    }
    case FS__CONFIRM: {
        const char *oid = doc ? fs__jstr(doc, "order_id") : NULL;
        if (r->status == 200 && oid) {
            if (s->norders == s->orders_cap) {
                s->orders_cap = s->orders_cap ? s->orders_cap * 2 : 1024;
                s->orders = fs_xrealloc(s->orders, s->orders_cap * sizeof *s->orders);
            }
            char user[200];
            fs__user(s, op->shopper, user, sizeof user);
            json_t *q = json_object_get(doc, "qty");
            fs_known_order_t *k = &s->orders[s->norders++];
            k->order_id = fs_xstrndup(oid, strlen(oid));
            k->rid = op->rid;
            op->rid = NULL;
            k->user = fs_xstrndup(user, strlen(user));
            k->sku = op->sku;
            k->qty = json_is_integer(q) ? (int)json_integer_value(q) : op->qty;
            s->sku[op->sku].told_units += k->qty;
            s->sku[op->sku].told_orders++;
            fs_stats_outcome(&s->stats, FS_OUT_CONFIRMED);
        } else if (code == FS_CODE_RES_EXPIRED) {
            fs_stats_outcome(&s->stats, FS_OUT_EXPIRED);
        } else {
            fs_stats_outcome(&s->stats, FS_OUT_FAILED);
        }
        fs__op_free(op);
        break;
    }
    case FS__CANCEL:
        if (r->status == 200)
            fs_stats_outcome(&s->stats, FS_OUT_CANCELLED);
        else if (code == FS_CODE_RES_EXPIRED)
            fs_stats_outcome(&s->stats, FS_OUT_EXPIRED);
        else
            fs_stats_outcome(&s->stats, FS_OUT_FAILED);
        fs__op_free(op);
        break;
    }
    json_decref(doc);
}

static void fs__on_answer(void *arg, int err, const fs_http_response_t *r)
{
    fs__conn_t *conn = arg;
    fs__shop_t *s = conn->shop;
    fs__op_t *op = conn->op;
    conn->op = NULL;
    s->in_flight--;
    if (s->finished) {
        fs__op_free(op);
        return;
    }
    fs__handle(s, op, err, r);
    s->free_conns[s->nfree++] = conn->index;
    fs__pump(s);
}

/* ---- the pump: hand work to free connections in order of intended time ---- */

static void fs__finish(fs__shop_t *s);

static void fs__pump(fs__shop_t *s)
{
    if (s->finished) return;
    uint64_t now = uv_hrtime();
    while (s->heap_len && s->heap[0].due_ns <= now) fs__ready_push(s, fs__heap_pop(s));
    uint64_t next = fs__arrival_ns(s, s->next_k);
    while (s->nfree) {
        fs__op_t *op = NULL;
        if (s->ready_head && (!next || s->ready_head->intended_ns <= next)) {
            op = fs__ready_pop(s);
        } else if (next && next <= now) {
            op = fs__new_arrival(s, s->next_k, next);
            if (now - next > s->max_lag_ns) s->max_lag_ns = now - next;
            if (now - next > 100000000u) s->late_arrivals++;
            next = fs__arrival_ns(s, ++s->next_k);
        } else {
            break;
        }
        fs__send(s, &s->conns[s->free_conns[--s->nfree]], op);
    }
    uint64_t wake = s->heap_len ? s->heap[0].due_ns : 0;
    if (next && s->nfree && (!wake || next < wake)) wake = next;
    if (wake)
        fs_pacer_at(&s->pacer, wake);
    else
        fs_pacer_stop(&s->pacer);
    /* done: no more arrivals, nothing waiting, nothing in flight */
    if (!next && now >= s->arrivals_end_ns && !s->heap_len && !s->ready_head && !s->in_flight)
        fs__finish(s);
}

static void fs__on_pacer(fs_pacer_t *p)
{
    fs__pump(p->data);
}

/* ---- operator calls during the run ---- */

static void fs__on_open(void *arg, int err, const fs_http_response_t *r)
{
    fs__shop_t *s = arg;
    if (!err && r->status == 200) {
        s->opened = 1;
        s->open_at_s = fs__elapsed(s, uv_hrtime());
    } else {
        fs_warn("open_failed", "status=%d err=%s", err ? 0 : r->status, fs_strerror(err));
    }
}

static void fs__show_progress(fs__shop_t *s);

static void fs__apply_status(fs__shop_t *s, json_t *doc, double t, int record)
{
    json_t *skus = json_object_get(doc, "skus"), *point = NULL, *per = NULL;
    if (record) {
        per = json_object();
        point = json_pack("{s:f, s:o}", "t", t, "skus", per);
    }
    size_t i;
    json_t *e;
    json_array_foreach(skus, i, e) {
        const char *id = fs__jstr(e, "sku");
        if (!id) continue;
        for (size_t j = 0; j < s->c->nskus; j++) {
            if (strcmp(s->c->skus[j].id, id)) continue;
            fs__sku_state_t *st = &s->sku[j];
            st->available = json_integer_value(json_object_get(e, "available"));
            st->held = json_integer_value(json_object_get(e, "held"));
            st->sold = json_integer_value(json_object_get(e, "sold"));
            st->total = json_integer_value(json_object_get(e, "total"));
            if (record) {
                if (st->available == 0 && st->available_zero_s < 0) st->available_zero_s = t;
                if (st->total > 0 && st->sold >= st->total && st->all_sold_s < 0) st->all_sold_s = t;
                json_object_set_new(per, id, json_pack("[I, I, I]", (json_int_t)st->available,
                                                       (json_int_t)st->held, (json_int_t)st->sold));
            }
        }
    }
    if (record) json_array_append_new(s->stock_series, point);
}

static void fs__on_poll(void *arg, int err, const fs_http_response_t *r)
{
    fs__shop_t *s = arg;
    s->poll_busy = 0;
    if (err || r->status != 200 || s->finished) return;
    json_t *doc = json_loadb(r->body, r->body_len, 0, NULL);
    if (doc) fs__apply_status(s, doc, fs__elapsed(s, uv_hrtime()), 1);
    json_decref(doc);
    if (s->progress_pending) fs__show_progress(s);
}

static void fs__admin_send(fs__shop_t *s, const char *method, const char *path, const char *body,
                           fs_http_client_cb cb, void *arg)
{
    fs_http_client_request(s->admin, method, path, s->admin_headers, body, body ? strlen(body) : 0,
                           cb, arg);
}

static void fs__print_progress(fs__shop_t *s, const fs_tl_point_t *p)
{
    char stock[200] = "";
    size_t len = 0;
    for (size_t i = 0; i < s->c->nskus && len < sizeof stock - 40; i++)
        len += (size_t)snprintf(stock + len, sizeof stock - len, " %s %lld", s->c->skus[i].id,
                                s->sku[i].available);
    const uint64_t *o = s->stats.outcomes;
    fs_progress_print(&s->progress,
                      "[%4.0fs/%.0fs%s] reserve %6.0f/s (offered %6.0f/s) p99 %7.2fms | held %llu "
                      "confirmed %llu sold_out %llu limit %llu retried %llu | left%s",
                      p->t, s->c->duration_s, p->t > s->c->duration_s + 0.01 ? " draining" : "",
                      (double)p->n[FS_KIND_RESERVE], p->offered,
                      p->p99[FS_KIND_RESERVE], (unsigned long long)o[FS_OUT_HELD],
                      (unsigned long long)o[FS_OUT_CONFIRMED], (unsigned long long)o[FS_OUT_SOLD_OUT],
                      (unsigned long long)o[FS_OUT_LIMIT], (unsigned long long)o[FS_OUT_RETRIED], stock);
}

static void fs__show_progress(fs__shop_t *s)
{
    fs_tl_point_t p;
    if (fs_timeline_last(&s->tl, &p)) fs__print_progress(s, &p);
    s->progress_pending = 0;
}

static void fs__push_second(fs__shop_t *s, double len)
{
    double a = (double)s->sec, b = (double)s->sec + len;
    double end = s->c->duration_s;
    if (a < end) s->stats.win_offered = (uint64_t)llround(fs_rate_count(&s->c->profile, b < end ? b : end) -
                                                          fs_rate_count(&s->c->profile, a));
    fs_timeline_push(&s->tl, s->sec, len, &s->stats);
    /* the line is printed when this second's stock poll answers, so "left" is current */
    if (s->progress_pending) fs__show_progress(s);
    s->progress_pending = 1;
    s->sec++;
}

static void fs__on_tick(uv_timer_t *t)
{
    fs__shop_t *s = t->data;
    uint64_t now = uv_hrtime();
    if (now >= s->deadline_ns) {
        fs__finish(s);
        return;
    }
    fs__push_second(s, 1.0);
    if (!s->poll_busy) {
        char path[300];
        snprintf(path, sizeof path, "/admin/v1/launches/%s", s->launch);
        s->poll_busy = 1;
        fs__admin_send(s, "GET", path, NULL, fs__on_poll, s);
    }
    uint64_t due = s->start_ns + (uint64_t)(s->sec + 1) * 1000000000u;
    uint64_t ms = 0;
    if (due > now) ms = (due - now + 999999u) / 1000000u;
    uv_timer_start(&s->tick, fs__on_tick, ms, 0);
    fs__pump(s);
}

static void fs__on_open_timer(uv_timer_t *t)
{
    fs__shop_t *s = t->data;
    char path[300];
    snprintf(path, sizeof path, "/admin/v1/launches/%s/open", s->launch);
    s->open_sent = 1;
    fs__admin_send(s, "POST", path, NULL, fs__on_open, s);
}

static void fs__noop_close(uv_handle_t *h)
{
    (void)h;
}

static void fs__finish(fs__shop_t *s)
{
    if (s->finished) return;
    s->finished = 1;
    uint64_t now = uv_hrtime();
    double len = fs__elapsed(s, now) - (double)s->sec;
    fs__push_second(s, len > 0.001 ? len : 0.001);
    fs__show_progress(s);
    fs_progress_done(&s->progress);
    /* what is left is unfinished: count it, free it */
    s->unfinished = s->in_flight + s->ready_len + s->heap_len;
    while (s->ready_head) fs__op_free(fs__ready_pop(s));
    while (s->heap_len) fs__op_free(fs__heap_pop(s));
    uv_timer_stop(&s->tick);
    fs_pacer_stop(&s->pacer);
    uv_timer_stop(&s->open_timer);
    for (int i = 0; i < s->nconns; i++) {
        fs_http_client_close(s->conns[i].client);
        s->conns[i].client = NULL;
    }
    uv_stop(&s->loop);
}

/* ---- synchronous operator calls (set-up and verification, outside the rush) ---- */

typedef struct {
    int done, err, status;
    json_t *doc;
    char body[300];
} fs__sync_t;

static void fs__on_sync(void *arg, int err, const fs_http_response_t *r)
{
    fs__sync_t *x = arg;
    x->done = 1;
    x->err = err;
    if (!err) {
        x->status = r->status;
        x->doc = json_loadb(r->body, r->body_len, 0, NULL);
        snprintf(x->body, sizeof x->body, "%.*s", (int)(r->body_len < 200 ? r->body_len : 200), r->body);
    }
}

static void fs__admin_sync(fs__shop_t *s, const char *method, const char *path, const char *body,
                           fs__sync_t *x)
{
    memset(x, 0, sizeof *x);
    fs__admin_send(s, method, path, body, fs__on_sync, x);
    while (!x->done) uv_run(&s->loop, UV_RUN_ONCE);
}

static int fs__sync_failed(const fs__sync_t *x, int want, const char *what, char *err, size_t errcap)
{
    if (x->err) {
        snprintf(err, errcap, "%s: no answer from the server (%s)", what, fs_strerror(x->err));
        return 1;
    }
    if (x->status != want) {
        snprintf(err, errcap, "%s: HTTP %d %s", what, x->status, x->body);
        return 1;
    }
    return 0;
}

static char *fs__launch_body(const fs__shop_t *s)
{
    json_t *skus = json_array();
    for (size_t i = 0; i < s->c->nskus; i++) {
        const fs_campaign_sku_t *k = &s->c->skus[i];
        json_array_append_new(skus, json_pack("{s:s, s:I, s:i, s:I}", "sku", k->id, "stock",
                                              (json_int_t)k->stock, "per_user_limit",
                                              k->per_user_limit, "price_cents",
                                              (json_int_t)k->price_cents));
    }
    json_t *doc = json_pack("{s:s, s:i, s:o}", "name", s->c->launch_name, "hold_seconds",
                            s->c->hold_seconds, "skus", skus);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return text;
}

/* ---- the run ---- */

int fs_shop_run(const fs_shop_opts_t *o, json_t **out_doc, int *passed, char *err, size_t errcap)
{
    const fs_campaign_t *c = o->campaign;
    *out_doc = NULL;
    *passed = 0;
    fs__shop_t *s = fs_xcalloc(1, sizeof *s);
    s->o = o;
    s->c = c;
    s->rng = c->seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    if (!s->rng) s->rng = 1;
    for (size_t i = 0; i < c->nskus; i++) {
        s->wsum += c->skus[i].weight;
        s->sku[i].first_sold_out_s = s->sku[i].available_zero_s = s->sku[i].all_sold_s = -1;
        s->sku[i].available = s->sku[i].total = c->skus[i].stock;
    }
    if (c->unique_id) {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        uint8_t rnd[2];
        fs_random_bytes(rnd, sizeof rnd);
        snprintf(s->launch, sizeof s->launch, "%.108s-%04d%02d%02d%02d%02d%02d-%02x%02x", c->launch_id,
                 (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100, tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
                 tm.tm_sec % 100, rnd[0], rnd[1]);
    } else {
        snprintf(s->launch, sizeof s->launch, "%s", c->launch_id);
    }
    uv_loop_init(&s->loop);
    fs_stats_init(&s->stats);
    fs_timeline_init(&s->tl, 1);
    fs_smap_init(&s->reserved);
    fs_progress_init(&s->progress, o->progress);
    s->stock_series = json_array();

    fs_http_client_opts_t co = {.addr = o->server, .timeout_ms = o->timeout_ms};
    fs_http_client_new(&s->loop, &co, &s->admin);
    fs_buf_t h;
    fs_buf_init(&h);
    fs_buf_printf(&h, "Authorization: Bearer %s\r\nContent-Type: application/json\r\n", o->admin_token);
    s->admin_headers = fs_xstrndup(h.data, h.len);
    fs_buf_free(&h);

    /* API keys: connection i uses key i mod n */
    char *keys = fs_xstrndup(o->api_keys, strlen(o->api_keys));
    char *key_list[64];
    int nkeys = 0;
    for (char *save = NULL, *k = strtok_r(keys, ",", &save); k && nkeys < 64; k = strtok_r(NULL, ",", &save)) {
        while (*k == ' ') k++;
        size_t l = strlen(k);
        while (l && k[l - 1] == ' ') k[--l] = 0;
        if (*k) key_list[nkeys++] = k;
    }
    int rc = FS_OK;
    json_t *doc = NULL;
    fs_verify_out_t ver;
    int verified = 0;
    fs__sync_t x;
    char path[300];
    if (!nkeys) {
        snprintf(err, errcap, "FLASHSALE_API_KEYS holds no key");
        rc = FS_EINVAL;
        goto out;
    }
    s->nconns = c->connections;
    s->conns = fs_xcalloc((size_t)s->nconns, sizeof *s->conns);
    s->free_conns = fs_xcalloc((size_t)s->nconns, sizeof *s->free_conns);
    for (int i = 0; i < s->nconns; i++) {
        fs__conn_t *cn = &s->conns[i];
        cn->shop = s;
        cn->index = i;
        fs_http_client_new(&s->loop, &co, &cn->client);
        fs_buf_init(&h);
        fs_buf_printf(&h, "Authorization: Bearer %s\r\nContent-Type: application/json\r\n", key_list[i % nkeys]);
        cn->headers = fs_xstrndup(h.data, h.len);
        fs_buf_free(&h);
        s->free_conns[s->nfree++] = s->nconns - 1 - i;
    }
    if (fs_pacer_init(&s->loop, &s->pacer, fs__on_pacer)) {
        snprintf(err, errcap, "cannot create a timerfd");
        rc = FS_EIO;
        goto out;
    }
    s->pacer.data = s;
    uv_timer_init(&s->loop, &s->tick);
    s->tick.data = s;
    uv_timer_init(&s->loop, &s->open_timer);
    s->open_timer.data = s;

    /* set-up: create the launch (scheduled), open it now unless open_after says later */
    char *body = fs__launch_body(s);
    snprintf(path, sizeof path, "/admin/v1/launches/%s", s->launch);
    fs__admin_sync(s, "PUT", path, body, &x);
    free(body);
    if (fs__sync_failed(&x, 200, "creating the launch (PUT /admin/v1/launches/{launch})", err, errcap)) {
        json_decref(x.doc);
        rc = FS_EUNAVAIL;
        goto out;
    }
    json_decref(x.doc);
    if (o->progress)
        fprintf(stderr, "flashsale-load: created launch %s (%zu SKUs); rehearsing for %.0f s\n",
                s->launch, c->nskus, c->duration_s);
    if (c->open_after_s <= 0) {
        snprintf(path, sizeof path, "/admin/v1/launches/%s/open", s->launch);
        fs__admin_sync(s, "POST", path, NULL, &x);
        json_decref(x.doc);
        if (fs__sync_failed(&x, 200, "opening the launch", err, errcap)) {
            rc = FS_EUNAVAIL;
            goto out;
        }
        s->opened = s->open_sent = 1;
    }

    /* the rush */
    s->start_ns = uv_hrtime();
    s->arrivals_end_ns = s->start_ns + (uint64_t)(c->duration_s * 1e9);
    s->deadline_ns = s->arrivals_end_ns + (uint64_t)(c->drain_s * 1e9);
    s->arrivals = fs_rate_arrivals(&c->profile);
    uv_timer_start(&s->tick, fs__on_tick, 1000, 0);
    if (!s->open_sent) uv_timer_start(&s->open_timer, fs__on_open_timer, (uint64_t)(c->open_after_s * 1000), 0);
    fs__pump(s);
    if (!s->finished) uv_run(&s->loop, UV_RUN_DEFAULT);
    double elapsed = fs__elapsed(s, uv_hrtime());
    /* let closing connections finish */
    uv_run(&s->loop, UV_RUN_NOWAIT);

    /* after the rush: close if asked, read the final counters, verify */
    if (c->close_at_end) {
        snprintf(path, sizeof path, "/admin/v1/launches/%s/close", s->launch);
        fs__admin_sync(s, "POST", path, NULL, &x);
        json_decref(x.doc);
    }
    snprintf(path, sizeof path, "/admin/v1/launches/%s", s->launch);
    fs__admin_sync(s, "GET", path, NULL, &x);
    char admin_err[400] = "";
    if (x.err || x.status != 200 || !x.doc) {
        fs__sync_failed(&x, 200, "GET /admin/v1/launches/{launch}", admin_err, sizeof admin_err);
        if (!admin_err[0]) snprintf(admin_err, sizeof admin_err, "unparsable answer");
    } else {
        fs__apply_status(s, x.doc, elapsed, 0);
    }
    if (o->verify) {
        fs_verify_in_t vin = {
            .launch = s->launch, .campaign = c, .admin = x.doc,
            .admin_error = admin_err[0] ? admin_err : NULL, .orders = s->orders,
            .norders = s->norders, .reserved = &s->reserved, .redis_host = o->redis_host,
            .redis_port = o->redis_port, .redis_db = o->redis_db, .redis_user = o->redis_user,
            .redis_password = o->redis_password,
        };
        fs_verify_run(&vin, &ver);
        verified = 1;
        *passed = ver.passed;
    } else {
        *passed = 1;
    }
    json_decref(x.doc);

    fs__shop_print_summary(s, elapsed, verified ? &ver : NULL);

    doc = fs__shop_report_doc(s, elapsed, verified ? &ver : NULL);
    *out_doc = doc;

out:
    if (s->stock_series) json_decref(s->stock_series);
    s->finished = 1;
    for (int i = 0; i < s->nconns; i++) {
        if (s->conns[i].client) fs_http_client_close(s->conns[i].client);
        free(s->conns[i].headers);
    }
    fs_http_client_close(s->admin);
    if (s->pacer.poll.data == &s->pacer) fs_pacer_close(&s->pacer, NULL);
    if (s->tick.data == s) {
        uv_close((uv_handle_t *)&s->tick, fs__noop_close);
        uv_close((uv_handle_t *)&s->open_timer, fs__noop_close);
    }
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    while (s->ready_head) fs__op_free(fs__ready_pop(s));
    while (s->heap_len) fs__op_free(fs__heap_pop(s));
    free(s->heap);
    for (size_t i = 0; i < s->norders; i++) {
        free(s->orders[i].order_id);
        free(s->orders[i].rid);
        free(s->orders[i].user);
    }
    free(s->orders);
    fs_smap_free(&s->reserved);
    fs_timeline_free(&s->tl);
    free(s->conns);
    free(s->free_conns);
    free(s->admin_headers);
    free(keys);
    free(s);
    return rc;
}
