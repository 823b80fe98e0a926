/* The relay's own HTTP endpoints, served by src/http on FLASHSALE_RELAY_LISTEN:
 *
 *   GET    /healthz                                   200 while the process runs
 *   GET    /readyz                                    200 when both Redis connections are ready
 *   GET    /metrics                                   Prometheus text
 *   GET    /admin/v1/dead-letters                     dead letters per SKU (counts)
 *   GET    /admin/v1/launches/{launch}/skus/{sku}/dead-letters?count=N&after=ID
 *   POST   /admin/v1/launches/{launch}/skus/{sku}/dead-letters/replay?max=N
 *   POST   /admin/v1/launches/{launch}/skus/{sku}/dead-letters/{id}/replay
 *   DELETE /admin/v1/launches/{launch}/skus/{sku}/dead-letters/{id}
 *
 * /admin/ routes need "Authorization: Bearer <FLASHSALE_ADMIN_TOKEN>" (compared in constant
 * time); without a configured token they answer 403. Errors are {"error": CODE, "message": TEXT}
 * as on the server. A replay moves dead letters to fs:{L:S}:replay, which the relays deliver like
 * new orders (same body, same order_id). Ownership: one fs__ctx_t per request, freed when it is
 * answered. */
#include "relay.h"
#include "../common/log.h"
#include "../common/timeutil.h"
#include "../http/router.h"
#include "flashsale/error.h"

#include <llhttp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    FS__R_HEALTHZ, FS__R_READYZ, FS__R_METRICS, FS__R_DEAD_COUNTS, FS__R_DEAD_LIST,
    FS__R_REPLAY_ALL, FS__R_REPLAY_ONE, FS__R_DELETE, FS__R__COUNT
};

static const fs_route_t fs__routes[FS__R__COUNT] = {
    [FS__R_HEALTHZ] = {HTTP_GET, "/healthz"},
    [FS__R_READYZ] = {HTTP_GET, "/readyz"},
    [FS__R_METRICS] = {HTTP_GET, "/metrics"},
    [FS__R_DEAD_COUNTS] = {HTTP_GET, "/admin/v1/dead-letters"},
    [FS__R_DEAD_LIST] = {HTTP_GET, "/admin/v1/launches/{launch}/skus/{sku}/dead-letters"},
    [FS__R_REPLAY_ALL] = {HTTP_POST, "/admin/v1/launches/{launch}/skus/{sku}/dead-letters/replay"},
    [FS__R_REPLAY_ONE] = {HTTP_POST, "/admin/v1/launches/{launch}/skus/{sku}/dead-letters/{id}/replay"},
    [FS__R_DELETE] = {HTTP_DELETE, "/admin/v1/launches/{launch}/skus/{sku}/dead-letters/{id}"},
};

static const char *const fs__meta[] = {"source", "source_id", "order_stream_id", "reason",
                                       "error", "attempts", "dead_ms"};

typedef struct {
    fs_relay_t *r;
    fs_http_req_t *req;
    fs_buf_t out;
    char launch[FS_ID_MAX + 1], sku[FS_ID_MAX + 1];
    char id[48];
    size_t count;
    /* dead-letter counts */
    size_t pending;
    int64_t *counts;
    int failed;
} fs__ctx_t;

static void fs__send(fs__ctx_t *c, int status, const char *extra, const char *ctype)
{
    fs_http_respond(c->req, status, extra, ctype, c->out.data ? c->out.data : "", c->out.len);
    fs_buf_free(&c->out);
    free(c->counts);
    free(c);
}

static void fs__error(fs__ctx_t *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fs__error(fs__ctx_t *c, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fs_json_error(&c->out, code, msg);
    fs__send(c, status, status == 503 ? "Retry-After: 1\r\n" : NULL, NULL);
}

static void fs__redis_failed(fs__ctx_t *c, const redisReply *reply, int err)
{
    if (err) {
        fs__error(c, 503, "unavailable", "Redis is unavailable (%s), retry shortly", fs_strerror(err));
        return;
    }
    char msg[300];
    fs_error("relay_admin_redis_error", "error=%s",
             fs_log_quote(msg, sizeof msg, reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply"));
    fs__error(c, 500, "internal", "unexpected answer from Redis");
}

/* A query parameter's value (not decoded: ours are digits and entry ids). */
static int fs__query(const fs_http_req_t *req, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = req->query.p, *end = req->query.p + req->query.n;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t vl = (size_t)(stop - p) - nl - 1;
            if (vl >= cap) return -1;
            memcpy(out, p + nl + 1, vl);
            out[vl] = 0;
            return 1;
        }
        p = stop + 1;
    }
    return 0;
}

static int fs__entry_id_valid(const char *s)
{
    const char *dash = strchr(s, '-');
    if (!dash || dash == s || !dash[1] || strlen(s) > 41) return 0;
    for (const char *p = s; *p; p++)
        if (p != dash && (*p < '0' || *p > '9')) return 0;
    return 1;
}

/* A positive integer query parameter within [1, max] (def when absent). Returns -1 when bad. */
static long fs__int_param(const fs_http_req_t *req, const char *name, long def, long max)
{
    char v[24];
    int q = fs__query(req, name, v, sizeof v);
    if (q == 0) return def;
    if (q < 0 || !v[0]) return -1;
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n < 1 || n > max) return -1;
    return n;
}

/* ---- service endpoints ---- */

static void fs__metrics(fs__ctx_t *c)
{
    fs_relay_t *r = c->r;
    fs_deliver_stats_t ds = fs_deliver_stats(r->deliver);
    fs_redis_stats_t a = fs_redis_stats(r->reader), b = fs_redis_stats(r->writer);
    fs_relay_live_t live = {
        .in_flight = fs_deliver_in_flight(r->deliver),
        .held = fs_relay_jobs_held(r),
        .streams = fs_relay_stream_count(r),
        .connections_open = fs_deliver_open_connections(r->deliver),
        .connects = ds.connects, .reuses = ds.reuses, .tls_handshakes = ds.tls_handshakes,
        .tls_failures = ds.tls_failures, .stale_retries = ds.stale_retries,
        .redis_commands = a.commands + b.commands, .redis_errors = a.errors + b.errors,
        .redis_timeouts = a.timeouts + b.timeouts, .redis_reconnects = a.reconnects + b.reconnects,
        .redis_connected = (uint64_t)(fs_redis_ready(r->reader) + fs_redis_ready(r->writer)),
    };
    fs_relay_metrics_write(&c->out, &r->metrics, &live);
    fs__send(c, 200, NULL, "text/plain; version=0.0.4");
}

/* ---- dead letters ---- */

typedef struct {
    fs__ctx_t *c;
    size_t idx;
} fs__count_arg_t;

static void fs__on_count(redisReply *reply, int err, void *arg)
{
    fs__count_arg_t *a = arg;
    fs__ctx_t *c = a->c;
    if (err || reply->type != REDIS_REPLY_INTEGER) c->failed = err ? err : FS_EPROTO;
    else c->counts[a->idx] = reply->integer;
    free(a);
    if (--c->pending > 0) return;
    if (c->failed) {
        fs__error(c, 503, "unavailable", "Redis is unavailable (%s), retry shortly", fs_strerror(c->failed));
        return;
    }
    fs_relay_t *r = c->r;
    int64_t total = 0;
    fs_buf_puts(&c->out, "{\"skus\":[");
    int any = 0;
    for (size_t i = 0; i < c->count; i++) {
        if (c->counts[i] <= 0) continue;
        int first = 1;
        fs_buf_puts(&c->out, any ? ",{" : "{");
        fs_json_kv_cstr(&c->out, &first, "launch", r->skus[i]->launch);
        fs_json_kv_cstr(&c->out, &first, "sku", r->skus[i]->sku);
        fs_json_kv_i64(&c->out, &first, "dead_letters", c->counts[i]);
        fs_buf_putc(&c->out, '}');
        total += c->counts[i];
        any = 1;
    }
    fs_buf_printf(&c->out, "],\"total\":%lld}", (long long)total);
    fs__send(c, 200, NULL, NULL);
}

static void fs__dead_counts(fs__ctx_t *c)
{
    fs_relay_t *r = c->r;
    if (r->nskus == 0) {
        fs_buf_puts(&c->out, "{\"skus\":[],\"total\":0}");
        fs__send(c, 200, NULL, NULL);
        return;
    }
    c->counts = fs_xcalloc(r->nskus, sizeof *c->counts);
    c->pending = r->nskus;
    c->count = r->nskus; /* SKUs discovered meanwhile are not in this answer */
    size_t n = r->nskus;
    for (size_t i = 0; i < n; i++) {
        fs__count_arg_t *a = fs_xmalloc(sizeof *a);
        a->c = c;
        a->idx = i;
        const char *argv[] = {"XLEN", r->skus[i]->dead_key};
        size_t lens[] = {4, strlen(r->skus[i]->dead_key)};
        fs_redis_command(r->writer, fs__on_count, a, 2, argv, lens);
    }
}

/* One dead-letter entry ([id, [field, value, ...]]) as a JSON object. */
static void fs__write_dead(fs_buf_t *o, const redisReply *e)
{
    const redisReply *id = e->element[0], *f = e->element[1];
    int first = 1;
    fs_buf_putc(o, '{');
    fs_json_kv_str(o, &first, "id", id->str, id->len);
    int64_t dead_ms = 0;
    if (f->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < f->elements; i += 2) {
            const redisReply *k = f->element[i], *v = f->element[i + 1];
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
            if (k->len == 8 && memcmp(k->str, "order_id", 8) == 0) {
                fs_json_kv_str(o, &first, "order_id", v->str, v->len);
            } else if (k->len == 8 && memcmp(k->str, "attempts", 8) == 0) {
                fs_json_kv_i64(o, &first, "attempts", strtoll(v->str, NULL, 10));
            } else if (k->len == 7 && memcmp(k->str, "dead_ms", 7) == 0) {
                dead_ms = strtoll(v->str, NULL, 10);
            } else {
                for (size_t m = 0; m < sizeof fs__meta / sizeof fs__meta[0]; m++)
                    if (k->len == strlen(fs__meta[m]) && memcmp(k->str, fs__meta[m], k->len) == 0)
                        fs_json_kv_str(o, &first, fs__meta[m], v->str, v->len);
            }
        }
    }
    fs_json_kv_time(o, &first, "dead_at", dead_ms, 1);
    /* The order as it would be delivered (or its raw fields when it is malformed). */
    fs_buf_t body;
    fs_buf_init(&body);
    char *oid = NULL, why[200];
    fs_json_key(o, &first, "order");
    if (fs_relay_payload(f->type == REDIS_REPLY_ARRAY ? f : NULL, &body, &oid, why, sizeof why) == FS_OK) {
        fs_buf_append(o, body.data, body.len);
    } else {
        int of = 1;
        fs_buf_putc(o, '{');
        for (size_t i = 0; f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2) {
            const redisReply *k = f->element[i], *v = f->element[i + 1];
            int meta = 0;
            for (size_t m = 0; m < sizeof fs__meta / sizeof fs__meta[0]; m++)
                meta |= k->len == strlen(fs__meta[m]) && memcmp(k->str, fs__meta[m], k->len) == 0;
            if (meta || k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)k->len, k->str);
            fs_json_kv_str(o, &of, key, v->str, v->len);
        }
        fs_buf_putc(o, '}');
    }
    free(oid);
    fs_buf_free(&body);
    fs_buf_putc(o, '}');
}

static void fs__on_list(redisReply *reply, int err, void *arg)
{
    fs__ctx_t *c = arg;
    if (err || reply->type != REDIS_REPLY_ARRAY) {
        fs__redis_failed(c, reply, err);
        return;
    }
    int first = 1;
    fs_buf_putc(&c->out, '{');
    fs_json_kv_cstr(&c->out, &first, "launch", c->launch);
    fs_json_kv_cstr(&c->out, &first, "sku", c->sku);
    fs_json_key(&c->out, &first, "dead_letters");
    fs_buf_putc(&c->out, '[');
    const redisReply *last = NULL;
    size_t n = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING)
            continue;
        if (n++) fs_buf_putc(&c->out, ',');
        fs__write_dead(&c->out, e);
        last = e->element[0];
    }
    fs_buf_putc(&c->out, ']');
    /* A full page may have a successor: "next" is the id to pass as after=. */
    if (last && reply->elements >= c->count) fs_json_kv_str(&c->out, &first, "next", last->str, last->len);
    else fs_buf_puts(&c->out, ",\"next\":null");
    fs_buf_putc(&c->out, '}');
    fs__send(c, 200, NULL, NULL);
}

static void fs__dead_list(fs__ctx_t *c, const char *dead_key)
{
    long count = fs__int_param(c->req, "count", 100, 1000);
    if (count < 0) {
        fs__error(c, 400, "invalid_request", "count must be an integer from 1 to 1000");
        return;
    }
    c->count = (size_t)count;
    char after[48], start[50];
    int q = fs__query(c->req, "after", after, sizeof after);
    if (q < 0 || (q > 0 && !fs__entry_id_valid(after))) {
        fs__error(c, 400, "invalid_request", "after must be a dead-letter id such as 1700000000000-0");
        return;
    }
    if (q > 0) snprintf(start, sizeof start, "(%s", after);
    else strcpy(start, "-");
    char cnt[24];
    snprintf(cnt, sizeof cnt, "%ld", count);
    const char *argv[] = {"XRANGE", dead_key, start, "+", "COUNT", cnt};
    size_t lens[6];
    for (int i = 0; i < 6; i++) lens[i] = strlen(argv[i]);
    fs_redis_command(c->r->writer, fs__on_list, c, 6, argv, lens);
}

static void fs__on_replayed(redisReply *reply, int err, void *arg)
{
    fs__ctx_t *c = arg;
    if (err || reply->type != REDIS_REPLY_ARRAY) {
        fs__redis_failed(c, reply, err);
        return;
    }
    if (c->id[0] && reply->elements == 0) {
        fs__error(c, 404, "not_found", "no dead letter %s for this SKU", c->id);
        return;
    }
    fs_buf_puts(&c->out, "{\"replayed\":[");
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const redisReply *d = reply->element[i], *p = reply->element[i + 1];
        if (d->type != REDIS_REPLY_STRING || p->type != REDIS_REPLY_STRING) continue;
        int first = 1;
        fs_buf_puts(&c->out, i ? ",{" : "{");
        fs_json_kv_str(&c->out, &first, "dead_id", d->str, d->len);
        fs_json_kv_str(&c->out, &first, "replay_id", p->str, p->len);
        fs_buf_putc(&c->out, '}');
    }
    fs_buf_printf(&c->out, "],\"count\":%zu}", reply->elements / 2);
    fs_info("relay_replayed", "launch=%s sku=%s count=%zu", c->launch, c->sku, reply->elements / 2);
    fs__send(c, 200, NULL, NULL);
}

static void fs__replay(fs__ctx_t *c, const char *dead_key, const char *replay_key, int one)
{
    char max[24];
    if (one) {
        snprintf(max, sizeof max, "%s", "");
    } else {
        long n = fs__int_param(c->req, "max", 1000, 10000);
        if (n < 0) {
            fs__error(c, 400, "invalid_request", "max must be an integer from 1 to 10000");
            return;
        }
        snprintf(max, sizeof max, "%ld", n);
    }
    const char *argv[] = {"FCALL", "fs_relay_replay", "2", dead_key, replay_key,
                          one ? "one" : "all", one ? c->id : max};
    size_t lens[7];
    for (int i = 0; i < 7; i++) lens[i] = strlen(argv[i]);
    fs_redis_command(c->r->writer, fs__on_replayed, c, 7, argv, lens);
}

static void fs__on_deleted(redisReply *reply, int err, void *arg)
{
    fs__ctx_t *c = arg;
    if (err || reply->type != REDIS_REPLY_INTEGER) {
        fs__redis_failed(c, reply, err);
        return;
    }
    if (reply->integer == 0) {
        fs__error(c, 404, "not_found", "no dead letter %s for this SKU", c->id);
        return;
    }
    int first = 1;
    fs_buf_putc(&c->out, '{');
    fs_json_kv_cstr(&c->out, &first, "deleted", c->id);
    fs_buf_putc(&c->out, '}');
    fs_info("relay_dead_letter_deleted", "launch=%s sku=%s id=%s", c->launch, c->sku, c->id);
    fs__send(c, 200, NULL, NULL);
}

/* ---- dispatch ---- */

static int fs__authorized(fs_http_req_t *req, const fs_secret_set_t *set)
{
    fs_str_t h;
    if (!fs_http_req_header(req, "authorization", &h)) return 0;
    if (h.n < 7 || strncasecmp(h.p, "Bearer ", 7) != 0) return 0;
    const char *t = h.p + 7;
    size_t n = h.n - 7;
    while (n && *t == ' ') t++, n--;
    return n > 0 && fs_secret_set_match(set, t, n) >= 0;
}

static int fs__id_param(fs__ctx_t *c, int idx, char *out, const char *what)
{
    fs_str_t p = c->req->params[idx];
    if (!fs_id_valid(p.p, p.n)) {
        fs__error(c, 400, "invalid_request", "%s must be 1 to 128 characters of A-Z a-z 0-9 _ . ~ -", what);
        return -1;
    }
    memcpy(out, p.p, p.n);
    out[p.n] = 0;
    return 0;
}

void fs_relay_admin_handle(fs_http_req_t *req, void *user)
{
    fs_relay_t *r = user;
    fs__ctx_t *c = fs_xcalloc(1, sizeof *c);
    c->r = r;
    c->req = req;
    fs_buf_init(&c->out);
    char allow[64];
    int route = fs_router_match(fs__routes, FS__R__COUNT, req->method, req->path, req->params,
                                allow, sizeof allow);
    if (route < 0) {
        char hdr[96];
        int status = fs_router_refusal(route, allow, &c->out, hdr, sizeof hdr);
        fs__send(c, status, hdr[0] ? hdr : NULL, NULL);
        return;
    }
    switch (route) {
    case FS__R_HEALTHZ:
        fs_buf_puts(&c->out, "{\"status\":\"ok\"}");
        fs__send(c, 200, NULL, NULL);
        return;
    case FS__R_READYZ:
        if (fs_redis_ready(r->reader) && fs_redis_ready(r->writer) && !r->stopping) {
            fs_buf_puts(&c->out, "{\"status\":\"ready\"}");
            fs__send(c, 200, NULL, NULL);
        } else {
            fs__error(c, 503, "unavailable", r->stopping ? "shutting down"
                                                         : "not connected to Redis or the relay library is not loaded");
        }
        return;
    case FS__R_METRICS: fs__metrics(c); return;
    default: break;
    }
    if (r->admin_tokens.count == 0) {
        fs__error(c, 403, "forbidden", "admin endpoints are disabled: no admin token configured");
        return;
    }
    if (!fs__authorized(req, &r->admin_tokens)) {
        fs_buf_puts(&c->out, "{\"error\":\"unauthorized\",\"message\":\"missing or wrong credential (Authorization: Bearer ...)\"}");
        fs__send(c, 401, "WWW-Authenticate: Bearer\r\n", NULL);
        return;
    }
    if (!fs_redis_ready(r->writer)) {
        fs__error(c, 503, "unavailable", "not connected to Redis, retry shortly");
        return;
    }
    if (route == FS__R_DEAD_COUNTS) {
        fs__dead_counts(c);
        return;
    }
    if (fs__id_param(c, 0, c->launch, "launch") || fs__id_param(c, 1, c->sku, "sku")) return;
    if (route == FS__R_REPLAY_ONE || route == FS__R_DELETE) {
        fs_str_t p = req->params[2];
        if (p.n >= sizeof c->id) p.n = sizeof c->id - 1;
        memcpy(c->id, p.p, p.n);
        c->id[p.n] = 0;
        if (!fs__entry_id_valid(c->id)) {
            fs__error(c, 400, "invalid_request", "the dead-letter id must look like 1700000000000-0");
            return;
        }
    }
    char dead_key[300], replay_key[300];
    fs_relay_key(dead_key, sizeof dead_key, c->launch, c->sku, "dead");
    fs_relay_key(replay_key, sizeof replay_key, c->launch, c->sku, "replay");
    switch (route) {
    case FS__R_DEAD_LIST: fs__dead_list(c, dead_key); return;
    case FS__R_REPLAY_ALL: fs__replay(c, dead_key, replay_key, 0); return;
    case FS__R_REPLAY_ONE: fs__replay(c, dead_key, replay_key, 1); return;
    case FS__R_DELETE: {
        const char *argv[] = {"XDEL", dead_key, c->id};
        size_t lens[] = {4, strlen(dead_key), strlen(c->id)};
        fs_redis_command(r->writer, fs__on_deleted, c, 3, argv, lens);
        return;
    }
    default: fs__error(c, 404, "not_found", "no such route");
    }
}
