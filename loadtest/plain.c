/* Plain mode load generation (see plain.h). */
#include "plain.h"
#include "pacer.h"
#include "progress.h"
#include "rate.h"
#include "common/buf.h"
#include "common/log.h"
#include "flashsale/error.h"
#include "flashsale/http_client.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

typedef struct fs__worker fs__worker_t;

typedef struct {
    fs__worker_t *w;
    fs_http_client_t *client;
    uint64_t start_ns;   /* send time (closed loop) or intended time (open loop) */
    uv_timer_t backoff;  /* closed loop: the first send, at the start; a pause after a failure */
    int index;
} fs__conn_t;

struct fs__worker {
    int id;
    const fs_plain_opts_t *o;
    const char *req; /* GET: the one request */
    size_t req_len;
    fs_buf_t ring;    /* POST: FS_PLAIN_SEQS requests back to back */
    size_t *ring_off; /* start of request i in ring; ring_off[FS_PLAIN_SEQS] = ring.len */
    size_t ring_next;
    uv_loop_t loop;
    fs__conn_t *conns;
    int nconns;
    int *free_conns; /* open loop: stack of idle connections */
    int nfree;
    fs_pacer_t pacer;
    int pacer_ok;
    uv_timer_t tick, stop;
    fs_rate_profile_t profile;
    uint64_t next_k, arrivals;
    uint64_t first_k;  /* open loop: the first arrival after the warm-up */
    uint64_t start_ns; /* the load starts (the warm-up, if any, then the measured run) */
    uint64_t measure_ns; /* the measured run starts: answers to requests sent before are ignored */
    long sec;
    int stopping;
    fs_stats_t stats;
    fs_timeline_t *tl;
    uint64_t missed, intended, connects;
    pthread_t thread;
};

static void fs__send(fs__conn_t *c);

/* The first of n arrivals intended at or after t s: arrival k is at N(t_k) = k + 1/2 (rate.h),
 * so k is about N(t) - 1/2; the loops correct the rounding. */
static uint64_t fs__first_after(const fs_rate_profile_t *p, uint64_t n, double t)
{
    double c = fs_rate_count(p, t) - 0.5;
    uint64_t k = c > 0 ? (uint64_t)ceil(c) : 0;
    if (k > n) k = n;
    while (k > 0 && fs_rate_arrival(p, k - 1) >= t) k--;
    while (k < n && fs_rate_arrival(p, k) < t) k++;
    return k;
}

static uint64_t fs__arrival_ns(fs__worker_t *w, uint64_t k)
{
    if (k >= w->arrivals) return 0;
    double t = fs_rate_arrival(&w->profile, k);
    return t < 0 ? 0 : w->start_ns + (uint64_t)(t * 1e9);
}

static void fs__dispatch(fs__worker_t *w)
{
    if (w->stopping) return;
    uint64_t now = uv_hrtime();
    uint64_t due = fs__arrival_ns(w, w->next_k);
    while (due && due <= now && w->nfree) {
        fs__conn_t *c = &w->conns[w->free_conns[--w->nfree]];
        c->start_ns = due;
        fs__send(c);
        due = fs__arrival_ns(w, ++w->next_k);
    }
    if (due && w->nfree)
        fs_pacer_at(&w->pacer, due);
    else
        fs_pacer_stop(&w->pacer);
}

static void fs__on_pacer(fs_pacer_t *p)
{
    fs__dispatch(p->data);
}

static void fs__on_backoff(uv_timer_t *t)
{
    fs__conn_t *c = t->data;
    if (c->w->stopping) return;
    c->start_ns = uv_hrtime();
    if (c->start_ns < c->w->start_ns) { /* a timer of whole milliseconds, early */
        uv_timer_start(t, fs__on_backoff, 1, 0);
        return;
    }
    fs__send(c);
}

static void fs__on_answer(void *arg, int err, const fs_http_response_t *r)
{
    fs__conn_t *c = arg;
    fs__worker_t *w = c->w;
    if (w->stopping) return;
    uint64_t now = uv_hrtime();
    if (c->start_ns < w->measure_ns) {
        /* sent during the warm-up: not measured */
    } else if (err) {
        fs_stats_record(&w->stats, FS_KIND_GET, now - c->start_ns, 0,
                        err == FS_ETIMEDOUT ? FS_CODE_TIMEOUT : FS_CODE_TRANSPORT);
    } else {
        fs_stats_record(&w->stats, FS_KIND_GET, now - c->start_ns, r->status,
                        r->status < 400 ? FS_CODE_NONE : FS_CODE_OTHER);
    }
    if (w->o->rate > 0) {
        w->free_conns[w->nfree++] = c->index;
        fs__dispatch(w);
    } else if (err) {
        /* do not spin on a refused connection: try again in 10 ms */
        uv_timer_start(&c->backoff, fs__on_backoff, 10, 0);
    } else {
        c->start_ns = now;
        fs__send(c);
    }
}

static void fs__send(fs__conn_t *c)
{
    fs__worker_t *w = c->w;
    w->stats.sent++;
    if (w->ring_off) {
        size_t i = w->ring_next;
        w->ring_next = (i + 1) % FS_PLAIN_SEQS;
        fs_http_client_send(c->client, w->ring.data + w->ring_off[i],
                            w->ring_off[i + 1] - w->ring_off[i], 0, fs__on_answer, c);
        return;
    }
    fs_http_client_send(c->client, w->req, w->req_len, 0, fs__on_answer, c);
}

/* Formats worker w's POST requests: body with each "{seq}" replaced by seq = 1 + thread + k *
 * threads for k = 0 .. FS_PLAIN_SEQS - 1, so that no two threads send the same number. */
static void fs__format_posts(fs__worker_t *w, int nth)
{
    const fs_plain_opts_t *o = w->o;
    fs_buf_t body;
    fs_buf_init(&body);
    fs_buf_init(&w->ring);
    w->ring_off = fs_xmalloc((FS_PLAIN_SEQS + 1) * sizeof *w->ring_off);
    for (size_t k = 0; k < FS_PLAIN_SEQS; k++) {
        uint64_t seq = 1 + (uint64_t)w->id + (uint64_t)k * (uint64_t)nth;
        fs_buf_reset(&body);
        for (const char *p = o->body; *p;) {
            const char *hit = strstr(p, "{seq}");
            size_t n = hit ? (size_t)(hit - p) : strlen(p);
            fs_buf_append(&body, p, n);
            if (!hit) break;
            fs_buf_i64(&body, (int64_t)seq);
            p = hit + 5;
        }
        w->ring_off[k] = w->ring.len;
        fs_buf_printf(&w->ring, "POST %s HTTP/1.1\r\nHost: %s\r\n", o->path, o->host_header);
        if (o->headers) fs_buf_puts(&w->ring, o->headers);
        fs_buf_printf(&w->ring, "Content-Length: %zu\r\n\r\n", body.len);
        fs_buf_append(&w->ring, body.data, body.len);
    }
    w->ring_off[FS_PLAIN_SEQS] = w->ring.len;
    fs_buf_free(&body);
}

/* Open loop: arrivals the schedule asks for in [sec, sec + len) of the measured run. */
static uint64_t fs__offered(const fs__worker_t *w, double len)
{
    double t = w->o->warmup_s + (double)w->sec;
    return (uint64_t)llround(fs_rate_count(&w->profile, t + len) - fs_rate_count(&w->profile, t));
}

static void fs__on_tick(uv_timer_t *t)
{
    fs__worker_t *w = t->data;
    if (w->stopping) return;
    if (w->o->rate > 0) w->stats.win_offered = fs__offered(w, 1);
    fs_timeline_push(w->tl, w->sec, 1.0, &w->stats);
    w->sec++;
    /* re-arm against the start time so that ticks do not drift */
    uint64_t due = w->measure_ns + (uint64_t)(w->sec + 1) * 1000000000u;
    uint64_t now = uv_hrtime();
    uv_timer_start(&w->tick, fs__on_tick, due > now ? (due - now) / 1000000u : 0, 0);
}

static void fs__on_closed_handle(uv_handle_t *h)
{
    (void)h;
}

static void fs__on_stop(uv_timer_t *t)
{
    fs__worker_t *w = t->data;
    w->stopping = 1;
    uint64_t now = uv_hrtime();
    double len = (double)(now - w->measure_ns) / 1e9 - (double)w->sec;
    if (len > 0.001) {
        if (w->o->rate > 0) w->stats.win_offered = fs__offered(w, len);
        fs_timeline_push(w->tl, w->sec, len > 1 ? 1 : len, &w->stats);
    } else {
        fs_timeline_push(w->tl, w->sec, 0, &w->stats); /* keep the other threads' points flowing */
    }
    if (w->o->rate > 0) {
        /* arrivals due in the measured run, and those of them never sent */
        uint64_t sent = w->next_k > w->first_k ? w->next_k : w->first_k;
        uint64_t k = sent;
        while (k < w->arrivals && fs__arrival_ns(w, k) <= now) k++;
        w->intended = k - w->first_k;
        w->missed = k - sent;
    }
    for (int i = 0; i < w->nconns; i++) {
        w->connects += fs_http_client_connects(w->conns[i].client);
        fs_http_client_close(w->conns[i].client);
        uv_close((uv_handle_t *)&w->conns[i].backoff, fs__on_closed_handle);
    }
    if (w->pacer_ok) fs_pacer_close(&w->pacer, NULL);
    uv_close((uv_handle_t *)&w->tick, fs__on_closed_handle);
    uv_close((uv_handle_t *)&w->stop, fs__on_closed_handle);
}

static void *fs__worker_main(void *arg)
{
    fs__worker_t *w = arg;
    uv_timer_init(&w->loop, &w->tick);
    uv_timer_init(&w->loop, &w->stop);
    w->tick.data = w->stop.data = w;
    fs_http_client_opts_t co = {.addr = w->o->addr, .timeout_ms = w->o->timeout_ms};
    for (int i = 0; i < w->nconns; i++) {
        fs__conn_t *c = &w->conns[i];
        c->w = w;
        c->index = i;
        fs_http_client_new(&w->loop, &co, &c->client);
        /* connected before the start, as wrk does: an open loop would otherwise open connections
         * while it measures, whenever more requests than ever before are in flight */
        fs_http_client_connect(c->client);
        uv_timer_init(&w->loop, &c->backoff);
        c->backoff.data = c;
    }
    uv_update_time(&w->loop); /* its timers count from the loop's time, stale since uv_loop_init */
    uint64_t now = uv_hrtime();
    uint64_t dur_ms = (uint64_t)(w->o->duration_s * 1000.0);
    uint64_t end_ns = w->measure_ns + dur_ms * 1000000u, tick_ns = w->measure_ns + 1000000000u;
    uv_timer_start(&w->stop, fs__on_stop, end_ns > now ? (end_ns - now) / 1000000u : 0, 0);
    uv_timer_start(&w->tick, fs__on_tick, tick_ns > now ? (tick_ns - now) / 1000000u : 0, 0);
    if (w->o->rate > 0) {
        for (int i = 0; i < w->nconns; i++) w->free_conns[w->nfree++] = w->nconns - 1 - i;
        fs__dispatch(w);
    } else {
        /* the first requests go at the start, not before: earlier ones would not be measured */
        uint64_t wait_ms = w->start_ns > now ? (w->start_ns - now + 999999u) / 1000000u : 0;
        for (int i = 0; i < w->nconns; i++)
            uv_timer_start(&w->conns[i].backoff, fs__on_backoff, wait_ms, 0);
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return NULL;
}

int fs_plain_run(const fs_plain_opts_t *o, fs_plain_result_t *out, char *err, size_t errcap)
{
    memset(out, 0, sizeof *out);
    int nth = o->threads < 1 ? 1 : o->threads;
    if (nth > o->connections) nth = o->connections;
    fs_buf_t req;
    fs_buf_init(&req);
    fs_buf_printf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\n", o->path, o->host_header);
    if (o->headers) fs_buf_puts(&req, o->headers);
    fs_buf_puts(&req, "\r\n");

    fs_timeline_init(&out->timeline, nth);
    fs__worker_t *ws = fs_xcalloc((size_t)nth, sizeof *ws);
    int rc = FS_OK;
    int started = 0;
    for (int i = 0; i < nth; i++) {
        fs__worker_t *w = &ws[i];
        w->id = i;
        w->o = o;
        w->req = req.data;
        w->req_len = req.len;
        if (o->body) fs__format_posts(w, nth);
        w->tl = &out->timeline;
        w->nconns = o->connections / nth + (i < o->connections % nth ? 1 : 0);
        w->conns = fs_xcalloc((size_t)w->nconns, sizeof *w->conns);
        w->free_conns = fs_xcalloc((size_t)w->nconns, sizeof *w->free_conns);
        fs_stats_init(&w->stats);
        fs_rate_profile_init(&w->profile);
        uv_loop_init(&w->loop);
        if (o->rate > 0) {
            fs_rate_profile_constant(&w->profile, o->rate / nth, o->warmup_s + o->duration_s);
            w->arrivals = fs_rate_arrivals(&w->profile);
            w->first_k = fs__first_after(&w->profile, w->arrivals, o->warmup_s);
            if (fs_pacer_init(&w->loop, &w->pacer, fs__on_pacer)) {
                snprintf(err, errcap, "cannot create a timerfd for open-loop pacing");
                rc = FS_EIO;
                break;
            }
            w->pacer_ok = 1;
            w->pacer.data = w;
            w->pacer.step_ns = o->step_ns;
        }
    }
    /* The clock starts once the requests are formatted and the schedules computed, 20 ms ahead for
     * the threads to start and open their connections. */
    uint64_t start = uv_hrtime() + 20000000u;
    uint64_t measure = start + (uint64_t)(o->warmup_s * 1e9);
    for (int i = 0; i < nth; i++) {
        ws[i].start_ns = start;
        ws[i].measure_ns = measure;
    }
    if (rc == FS_OK) {
        for (int i = 0; i < nth; i++) {
            if (pthread_create(&ws[i].thread, NULL, fs__worker_main, &ws[i]) != 0) {
                snprintf(err, errcap, "cannot start load thread %d", i);
                fs_panic(__FILE__, __LINE__, "pthread_create");
            }
            started++;
        }
        fs_progress_t pr;
        fs_progress_init(&pr, o->progress);
        uint64_t end = measure + (uint64_t)(o->duration_s * 1e9);
        size_t shown = 0;
        while (uv_hrtime() < end) {
            struct timespec ts = {0, 100000000};
            nanosleep(&ts, NULL);
            fs_tl_point_t p;
            pthread_mutex_lock(&out->timeline.mu);
            size_t n = out->timeline.n;
            pthread_mutex_unlock(&out->timeline.mu);
            if (n != shown && fs_timeline_last(&out->timeline, &p)) {
                shown = n;
                fs_progress_plain(&pr, &p, o->duration_s, o->rate);
            }
        }
        for (int i = 0; i < started; i++) pthread_join(ws[i].thread, NULL);
        fs_progress_done(&pr);
        out->elapsed_s = o->duration_s;
    }
    fs_stats_init(&out->stats);
    for (int i = 0; i < nth; i++) {
        fs__worker_t *w = &ws[i];
        fs_stats_merge(&out->stats, &w->stats);
        out->intended += w->intended;
        out->missed += w->missed;
        out->connects += w->connects;
        uv_loop_close(&w->loop);
        fs_rate_profile_free(&w->profile);
        free(w->conns);
        free(w->free_conns);
        if (w->ring_off) fs_buf_free(&w->ring);
        free(w->ring_off);
    }
    out->stats.offered = out->intended;
    free(ws);
    fs_buf_free(&req);
    return rc;
}
