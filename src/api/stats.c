/* Per-launch reservation statistics: counting, publishing to Redis, and the stats endpoint
 * (see stats.h). */
#include "stats.h"
#include "api.h"
#include "../common/log.h"
#include "../common/timeutil.h"
#include "flashsale/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FS__SLOTS 64 /* launches one loop counts within one second; more are not counted */

static const char *const fs__outcomes[FS_STATS_OUTCOMES] = {
    "ok", "sold_out", "limit_exceeded", "launch_not_open", "not_found", "overloaded",
    "unavailable", "error", "rate_limited", "rejected"};

typedef struct {
    char launch[FS_ID_MAX + 1];
    size_t len;
    uint32_t total;
    uint32_t counts[FS_STATS_OUTCOMES];
    uint32_t lat[FS_STATS_LAT_BUCKETS];
} fs__slot_t;

/* Owned by its loop's fs_api_t (fs_api_free frees it); the timer lives inside it and is closed
 * by fs_stats_stop before the loop ends. */
struct fs_stats {
    uv_timer_t timer;
    fs_redis_t *redis;
    int started, stopped;
    int last;         /* slot of the last request: launch days have one hot launch */
    uint64_t dropped; /* answers not counted because the table was full */
    void (*tick_fn)(void *);
    void *tick_arg;
    fs__slot_t slots[FS__SLOTS];
};

const char *fs_stats_outcome_name(int o)
{
    return o >= 0 && o < FS_STATS_OUTCOMES ? fs__outcomes[o] : "rejected";
}

int fs_stats_bucket(uint64_t dur_ns)
{
    uint64_t v = dur_ns / 25000; /* units of 25 us */
    if (v == 0) return 0;
    int k = 63 - __builtin_clzll(v); /* 2^k <= v < 2^(k+1) */
    /* the upper half-octave starts at 2^k * sqrt(2); compare squares to stay in integers */
    uint64_t lo = (uint64_t)1 << k;
    int b = (k < 31 && v * v >= 2 * lo * lo) ? 2 * k + 2 : 2 * k + 1;
    return b < FS_STATS_LAT_BUCKETS ? b : FS_STATS_LAT_BUCKETS - 1;
}

double fs_stats_bucket_upper_ms(int b)
{
    return 0.025 * pow(2.0, b / 2.0);
}

/* ---- counting (hot path: no allocation, no system call) ---- */

void fs_stats_reserve(fs_stats_t *st, const char *launch, size_t n, int code, int status,
                      uint64_t dur_ns)
{
    if (!fs_id_valid(launch, n)) return;
    fs__slot_t *s = &st->slots[st->last];
    if (s->len != n || memcmp(s->launch, launch, n) != 0) {
        int free_slot = -1, found = -1;
        for (int i = 0; i < FS__SLOTS && found < 0; i++) {
            if (st->slots[i].len == n && memcmp(st->slots[i].launch, launch, n) == 0) found = i;
            else if (st->slots[i].len == 0 && free_slot < 0) free_slot = i;
        }
        if (found < 0) {
            if (free_slot < 0) {
                st->dropped++;
                return;
            }
            found = free_slot;
            memcpy(st->slots[found].launch, launch, n);
            st->slots[found].launch[n] = 0;
            st->slots[found].len = n;
        }
        st->last = found;
        s = &st->slots[found];
    }
    int o;
    if (status == 429) o = FS_STATS_RATE_LIMITED;
    else if (code >= 0 && code < FS_STATS_RATE_LIMITED) o = code;
    else o = FS_STATS_REJECTED;
    s->total++;
    s->counts[o]++;
    s->lat[fs_stats_bucket(dur_ns)]++;
}

/* ---- publishing ---- */

static void fs__published(redisReply *r, int err, void *arg)
{
    (void)arg;
    if (err || (r && r->type == REDIS_REPLY_ERROR))
        fs_debug("stats_publish_failed", "error=%s", err ? fs_strerror(err) : "reply");
}

static void fs__publish_slot(fs_stats_t *st, fs__slot_t *s, int64_t sec)
{
    char key[FS_ID_MAX + 48], field[16], val[16], ttl[16];
    size_t kl = (size_t)snprintf(key, sizeof key, "fs:stats:{%s}:%lld", s->launch, (long long)sec);
    for (int f = 0; f < FS_STATS_OUTCOMES + FS_STATS_LAT_BUCKETS; f++) {
        uint32_t v = f < FS_STATS_OUTCOMES ? s->counts[f] : s->lat[f - FS_STATS_OUTCOMES];
        if (!v) continue;
        const char *name = field;
        if (f < FS_STATS_OUTCOMES) name = fs__outcomes[f];
        else snprintf(field, sizeof field, "l%d", f - FS_STATS_OUTCOMES);
        const char *argv[] = {"HINCRBY", key, name, val};
        size_t lens[] = {7, kl, strlen(name), (size_t)snprintf(val, sizeof val, "%u", v)};
        fs_redis_command(st->redis, fs__published, NULL, 4, argv, lens);
    }
    const char *argv[] = {"EXPIRE", key, ttl};
    size_t lens[] = {6, kl, (size_t)snprintf(ttl, sizeof ttl, "%d", FS_STATS_TTL_S)};
    fs_redis_command(st->redis, fs__published, NULL, 3, argv, lens);
}

static uint64_t fs__delay_to_next_second(void)
{
    return (uint64_t)(1000 - fs_wall_ms() % 1000) + 20;
}

static void fs__on_tick(uv_timer_t *t)
{
    fs_stats_t *st = t->data;
    /* The counts belong to the second that just ended (the timer fires ~20 ms after it). */
    int64_t sec = (fs_wall_ms() - 500) / 1000;
    for (int i = 0; i < FS__SLOTS; i++) {
        fs__slot_t *s = &st->slots[i];
        if (!s->len) continue;
        if (!s->total) {
            s->len = 0; /* idle for a whole second: give the slot back */
            continue;
        }
        if (fs_redis_ready(st->redis)) fs__publish_slot(st, s, sec);
        s->total = 0;
        memset(s->counts, 0, sizeof s->counts);
        memset(s->lat, 0, sizeof s->lat);
    }
    if (st->tick_fn) st->tick_fn(st->tick_arg);
    if (!st->stopped) uv_timer_start(&st->timer, fs__on_tick, fs__delay_to_next_second(), 0);
}

void fs_stats_on_tick(fs_stats_t *st, void (*fn)(void *arg), void *arg)
{
    st->tick_fn = fn;
    st->tick_arg = arg;
}

fs_stats_t *fs_stats_new(uv_loop_t *loop, fs_redis_t *redis)
{
    fs_stats_t *st = fs_xcalloc(1, sizeof *st);
    st->redis = redis;
    uv_timer_init(loop, &st->timer);
    st->timer.data = st;
    uv_timer_start(&st->timer, fs__on_tick, fs__delay_to_next_second(), 0);
    st->started = 1;
    return st;
}

static void fs__timer_closed(uv_handle_t *h)
{
    (void)h;
}

void fs_stats_stop(fs_stats_t *st)
{
    if (!st || st->stopped) return;
    st->stopped = 1;
    uv_timer_stop(&st->timer);
    uv_close((uv_handle_t *)&st->timer, fs__timer_closed);
}

void fs_stats_free(fs_stats_t *st)
{
    free(st);
}

/* ---- GET /admin/v1/launches/{launch}/stats?seconds=N&window=W ---- */

typedef struct fs__stats_job fs__stats_job_t;

typedef struct {
    fs__stats_job_t *job;
    int index;
} fs__stats_part_t;

struct fs__stats_job {
    fs_api_ctx_t *c;
    int64_t first_sec, now_ms;
    int n, window, pending, failed;
    /* the fulfillment relay's consumer group on the order streams, when there is one */
    int relay_seen;
    int64_t relay_pending, relay_unread;
    uint64_t (*counts)[FS_STATS_OUTCOMES]; /* [n] */
    uint64_t (*lat)[FS_STATS_LAT_BUCKETS]; /* [n] */
    fs__stats_part_t *parts;               /* [n] */
};

static void fs__job_free(fs__stats_job_t *j)
{
    free(j->counts);
    free(j->lat);
    free(j->parts);
    free(j);
}

/* The q-quantile of a histogram, in ms (upper bound of its bucket), or -1 when empty. */
static double fs__quantile(const uint64_t *lat, double q)
{
    uint64_t total = 0, cum = 0;
    for (int b = 0; b < FS_STATS_LAT_BUCKETS; b++) total += lat[b];
    if (!total) return -1;
    uint64_t rank = (uint64_t)ceil(q * (double)total);
    if (rank < 1) rank = 1;
    for (int b = 0; b < FS_STATS_LAT_BUCKETS; b++) {
        cum += lat[b];
        if (cum >= rank) return fs_stats_bucket_upper_ms(b);
    }
    return fs_stats_bucket_upper_ms(FS_STATS_LAT_BUCKETS - 1);
}

static void fs__kv_ms(fs_buf_t *o, int *first, const char *key, double ms)
{
    fs_json_key(o, first, key);
    if (ms < 0) fs_buf_puts(o, "null");
    else fs_buf_printf(o, "%.3f", ms);
}

static void fs__kv_ratio(fs_buf_t *o, int *first, const char *key, uint64_t part, uint64_t total)
{
    fs_json_key(o, first, key);
    fs_buf_printf(o, "%.4f", total ? (double)part / (double)total : 0.0);
}

static void fs__finish(fs__stats_job_t *j)
{
    fs_api_ctx_t *c = j->c;
    if (j->failed) {
        fs__job_free(j);
        fs_api_error(c, 503, "unavailable", "the stock service is unavailable, retry shortly");
        return;
    }
    fs_buf_t *o = &c->out;
    int first = 1;
    fs_buf_putc(o, '{');
    fs_json_kv_cstr(o, &first, "launch", c->launch);
    fs_json_kv_time(o, &first, "now", j->now_ms, 0);
    fs_json_kv_i64(o, &first, "seconds", j->n);
    /* c->aux holds the launch document (state and per-SKU counters) */
    fs_json_key(o, &first, "current");
    fs_buf_append(o, c->aux.data, c->aux.len);

    /* The window: the last `window` seconds of the series. */
    uint64_t wc[FS_STATS_OUTCOMES] = {0}, wl[FS_STATS_LAT_BUCKETS] = {0}, wt = 0;
    int wfirst = j->n - j->window;
    if (wfirst < 0) wfirst = 0;
    int wn = j->n - wfirst;
    for (int i = wfirst; i < j->n; i++) {
        for (int k = 0; k < FS_STATS_OUTCOMES; k++) wc[k] += j->counts[i][k], wt += j->counts[i][k];
        for (int b = 0; b < FS_STATS_LAT_BUCKETS; b++) wl[b] += j->lat[i][b];
    }
    fs_json_key(o, &first, "window");
    int wf = 1;
    fs_buf_putc(o, '{');
    fs_json_kv_i64(o, &wf, "seconds", wn);
    fs_json_kv_time(o, &wf, "from", (j->first_sec + wfirst) * 1000, 0);
    fs_json_kv_time(o, &wf, "to", (j->first_sec + wfirst + wn) * 1000, 0);
    fs_json_kv_i64(o, &wf, "requests", (int64_t)wt);
    fs_json_key(o, &wf, "per_second");
    fs_buf_putc(o, '{');
    int pf = 1;
    fs_json_key(o, &pf, "total");
    fs_buf_printf(o, "%.2f", wn ? (double)wt / wn : 0.0);
    for (int k = 0; k < FS_STATS_OUTCOMES; k++) {
        fs_json_key(o, &pf, fs__outcomes[k]);
        fs_buf_printf(o, "%.2f", wn ? (double)wc[k] / wn : 0.0);
    }
    fs_buf_putc(o, '}');
    fs__kv_ms(o, &wf, "p50_ms", fs__quantile(wl, 0.50));
    fs__kv_ms(o, &wf, "p99_ms", fs__quantile(wl, 0.99));
    fs__kv_ratio(o, &wf, "rate_limited_share", wc[FS_STATS_RATE_LIMITED], wt);
    fs__kv_ratio(o, &wf, "overloaded_share", wc[FS_RES_OVERLOADED], wt);
    fs__kv_ratio(o, &wf, "sold_out_share", wc[FS_RES_SOLD_OUT], wt);
    fs_buf_putc(o, '}');

    /* Orders the relay (docs/relay.md) has not delivered yet: read by it and not acknowledged
     * (pending), or not read at all (unread). null when no relay follows this launch. */
    fs_json_key(o, &first, "relay");
    if (j->relay_seen) {
        int rf = 1;
        fs_buf_putc(o, '{');
        fs_json_kv_i64(o, &rf, "pending", j->relay_pending);
        fs_json_kv_i64(o, &rf, "unread", j->relay_unread);
        fs_buf_putc(o, '}');
    } else {
        fs_buf_puts(o, "null");
    }

    fs_json_key(o, &first, "series");
    fs_buf_putc(o, '[');
    for (int i = 0; i < j->n; i++) {
        int sf = 1;
        uint64_t t = 0;
        for (int k = 0; k < FS_STATS_OUTCOMES; k++) t += j->counts[i][k];
        if (i) fs_buf_putc(o, ',');
        fs_buf_putc(o, '{');
        fs_json_kv_i64(o, &sf, "t", j->first_sec + i);
        fs_json_kv_i64(o, &sf, "total", (int64_t)t);
        for (int k = 0; k < FS_STATS_OUTCOMES; k++)
            if (j->counts[i][k]) fs_json_kv_i64(o, &sf, fs__outcomes[k], (int64_t)j->counts[i][k]);
        fs__kv_ms(o, &sf, "p50_ms", fs__quantile(j->lat[i], 0.50));
        fs__kv_ms(o, &sf, "p99_ms", fs__quantile(j->lat[i], 0.99));
        fs_buf_putc(o, '}');
    }
    fs_buf_puts(o, "]}");
    fs__job_free(j);
    fs_api_send(c, 200, "Cache-Control: no-store\r\n");
}

static void fs__on_second(redisReply *r, int err, void *arg)
{
    fs__stats_part_t *p = arg;
    fs__stats_job_t *j = p->job;
    if (err || !r || r->type != REDIS_REPLY_ARRAY) {
        j->failed = 1;
    } else {
        for (size_t e = 0; e + 1 < r->elements; e += 2) {
            size_t fl;
            const char *f = fs_reply_str(r->element[e], &fl);
            int ok;
            int64_t v = fs_reply_i64(r->element[e + 1], &ok);
            if (!ok || v < 0) continue;
            if (fl > 1 && f[0] == 'l' && f[1] >= '0' && f[1] <= '9') {
                int b = atoi(f + 1);
                if (b >= 0 && b < FS_STATS_LAT_BUCKETS) j->lat[p->index][b] += (uint64_t)v;
                continue;
            }
            for (int k = 0; k < FS_STATS_OUTCOMES; k++)
                if (strlen(fs__outcomes[k]) == fl && memcmp(fs__outcomes[k], f, fl) == 0)
                    j->counts[p->index][k] += (uint64_t)v;
        }
    }
    if (--j->pending == 0) fs__finish(j);
}

/* XINFO GROUPS of one order stream: adds the relay group's pending and lag (Redis 7). A stream
 * that does not exist yet, or has no such group, adds nothing. */
static void fs__on_groups(redisReply *r, int err, void *arg)
{
    fs__stats_job_t *j = arg;
    if (!err && r && r->type == REDIS_REPLY_ARRAY) {
        for (size_t g = 0; g < r->elements; g++) {
            const redisReply *grp = r->element[g];
            int64_t pending = 0, lag = 0;
            int is_relay = 0;
            for (size_t k = 0; grp->type == REDIS_REPLY_ARRAY && k + 1 < grp->elements; k += 2) {
                size_t fl, vl;
                const char *f = fs_reply_str(grp->element[k], &fl);
                const char *v = fs_reply_str(grp->element[k + 1], &vl);
                if (fl == 4 && !memcmp(f, "name", 4)) is_relay = vl == 5 && !memcmp(v, "relay", 5);
                else if (fl == 7 && !memcmp(f, "pending", 7)) pending = fs_reply_i64(grp->element[k + 1], NULL);
                else if (fl == 3 && !memcmp(f, "lag", 3)) lag = fs_reply_i64(grp->element[k + 1], NULL);
            }
            if (is_relay) {
                j->relay_seen = 1;
                j->relay_pending += pending;
                j->relay_unread += lag;
            }
        }
    }
    if (--j->pending == 0) fs__finish(j);
}

static void fs__on_launch(redisReply *r, int err, void *arg)
{
    fs__stats_job_t *j = arg;
    fs_api_ctx_t *c = j->c;
    fs_launch_view_t v;
    if (err || r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
        fs__job_free(j);
        fs_api_redis_failed(c, r, err);
        return;
    }
    if (fs_api_reply_is(r, "not_found")) {
        fs__job_free(j);
        fs_api_error(c, 404, "not_found", "no such launch: %s", c->launch);
        return;
    }
    if (fs_launch_view_parse(r, &v)) {
        fs__job_free(j);
        fs_api_redis_failed(c, r, 0);
        return;
    }
    fs_api_launch_json(&c->aux, &v);
    fs_stock_t *stock = c->api->stock;
    j->pending = j->n + (int)v.nskus + 1;
    for (size_t i = 0; i < v.nskus; i++) {
        char key[2 * FS_ID_MAX + 32];
        size_t kl = (size_t)snprintf(key, sizeof key, "fs:{%s:%.*s}:orders", c->launch,
                                     (int)v.skus[i].sku_len, v.skus[i].sku);
        const char *argv[] = {"XINFO", "GROUPS", key};
        size_t lens[] = {5, 6, kl};
        fs_stock_command(stock, fs__on_groups, j, 3, argv, lens);
    }
    fs_launch_view_free(&v);
    for (int i = 0; i < j->n; i++) {
        char key[FS_ID_MAX + 48];
        size_t kl = (size_t)snprintf(key, sizeof key, "fs:stats:{%s}:%lld", c->launch,
                                     (long long)(j->first_sec + i));
        const char *argv[] = {"HGETALL", key};
        size_t lens[] = {7, kl};
        j->parts[i].job = j;
        j->parts[i].index = i;
        /* callbacks may fire synchronously (Redis not ready): pending counts them down */
        fs_stock_command(stock, fs__on_second, &j->parts[i], 2, argv, lens);
    }
    if (--j->pending == 0) fs__finish(j);
}

void fs_api_stats(fs_api_ctx_t *c)
{
    long seconds, window;
    if (fs_api_id_param(c, 0, c->launch, "launch") ||
        fs_api_query_int(c, "seconds", 2, FS_STATS_MAX_SECONDS, 60, &seconds) ||
        fs_api_query_int(c, "window", 1, 60, 5, &window))
        return;
    fs__stats_job_t *j = fs_xcalloc(1, sizeof *j);
    j->c = c;
    j->n = (int)seconds;
    j->window = (int)window;
    j->now_ms = fs_wall_ms();
    /* The series ends with the last complete second: servers publish a second ~20 ms after it. */
    j->first_sec = j->now_ms / 1000 - j->n;
    j->counts = fs_xcalloc((size_t)j->n, sizeof *j->counts);
    j->lat = fs_xcalloc((size_t)j->n, sizeof *j->lat);
    j->parts = fs_xcalloc((size_t)j->n, sizeof *j->parts);
    fs_stock_launch_get(c->api->stock, c->launch, fs__on_launch, j);
}
