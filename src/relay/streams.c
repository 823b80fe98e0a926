/* Following the streams (see relay.h): discovery of SKUs, consumer groups, reading new entries,
 * taking over idle ones, the heartbeat of held entries and the lag probe.
 *
 * Commands: the reader connection carries only XREADGROUP ... BLOCK (a blocked command would hold
 * up everything behind it on the same connection); the writer connection carries the rest.
 * Every SKU, once discovered, lives until the relay is freed, so callbacks may keep pointers to
 * SKUs and streams; jobs are looked up by id (they may be gone). */
#include "relay.h"
#include "../common/log.h"
#include "../common/timeutil.h"
#include "flashsale/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FS__TOUCH_CHUNK 500
#define FS__CLAIM_CALLS_PER_PASS 10 /* XAUTOCLAIM calls per stream per pass */
#define FS__LAG_INTERVAL_MS 1000
#define FS__FIN_RETRY_MS 1000

static void fs__read(fs_relay_t *r);
static void fs__claim_next(fs_relay_t *r);

/* ---- SKUs and streams ---- */

size_t fs_relay_key(char *out, size_t cap, const char *launch, const char *sku, const char *suffix)
{
    int n = snprintf(out, cap, "fs:{%s:%s}:%s", launch, sku, suffix);
    fs_assert(n > 0 && (size_t)n < cap);
    return (size_t)n;
}

size_t fs_relay_stream_count(const fs_relay_t *r)
{
    return 2 * r->nskus;
}

fs_relay_stream_t *fs_relay_stream_at(fs_relay_t *r, size_t i)
{
    fs_relay_sku_t *k = r->skus[i / 2];
    return i % 2 ? &k->replay : &k->orders;
}

fs_relay_stream_t *fs_relay_stream_find(fs_relay_t *r, const char *key, size_t len)
{
    for (size_t i = 0; i < 2 * r->nskus; i++) {
        fs_relay_stream_t *s = fs_relay_stream_at(r, i);
        if (s->key_len == len && memcmp(s->key, key, len) == 0) return s;
    }
    return NULL;
}

static void fs__stream_init(fs_relay_sku_t *k, fs_relay_stream_t *s, int replay)
{
    char key[300];
    size_t n = fs_relay_key(key, sizeof key, k->launch, k->sku, replay ? "replay" : "orders");
    s->sku = k;
    s->replay = replay;
    s->key = fs_xstrndup(key, n);
    s->key_len = n;
    strcpy(s->own_cursor, "0");
    strcpy(s->claim_cursor, "0-0");
}

static fs_relay_sku_t *fs__sku_find(fs_relay_t *r, const char *launch, size_t ll, const char *sku,
                                    size_t sl)
{
    for (size_t i = 0; i < r->nskus; i++) {
        fs_relay_sku_t *k = r->skus[i];
        if (strlen(k->launch) == ll && memcmp(k->launch, launch, ll) == 0 && strlen(k->sku) == sl &&
            memcmp(k->sku, sku, sl) == 0)
            return k;
    }
    return NULL;
}

static void fs__sku_add(fs_relay_t *r, const char *launch, size_t ll, const char *sku, size_t sl)
{
    if (!fs_id_valid(launch, ll) || !fs_id_valid(sku, sl)) return; /* cannot be ours */
    if (fs__sku_find(r, launch, ll, sku, sl)) return;
    fs_relay_sku_t *k = fs_xcalloc(1, sizeof *k);
    k->relay = r;
    memcpy(k->launch, launch, ll);
    memcpy(k->sku, sku, sl);
    char key[300];
    size_t n = fs_relay_key(key, sizeof key, k->launch, k->sku, "delivery");
    k->delivery_key = fs_xstrndup(key, n);
    n = fs_relay_key(key, sizeof key, k->launch, k->sku, "dead");
    k->dead_key = fs_xstrndup(key, n);
    fs__stream_init(k, &k->orders, 0);
    fs__stream_init(k, &k->replay, 1);
    if (r->nskus == r->skus_cap) {
        r->skus_cap = r->skus_cap ? 2 * r->skus_cap : 16;
        r->skus = fs_xrealloc(r->skus, r->skus_cap * sizeof *r->skus);
    }
    r->skus[r->nskus++] = k;
    fs_info("relay_following", "launch=%s sku=%s", k->launch, k->sku);
}

/* ---- consumer groups ---- */

static void fs__on_group(redisReply *reply, int err, void *arg)
{
    fs_relay_stream_t *s = arg;
    fs_relay_t *r = s->sku->relay;
    s->creating = 0;
    if (err) return; /* tried again by the next discovery */
    if (reply->type == REDIS_REPLY_ERROR && !strstr(reply->str, "BUSYGROUP")) {
        char msg[200];
        fs_warn("relay_group_failed", "stream=%s error=%s", s->key, fs_log_quote(msg, sizeof msg, reply->str));
        return;
    }
    if (!s->group_ready) {
        s->group_ready = 1;
        r->ngroups_ready++;
    }
    fs__read(r);
}

/* Creates the group on every stream that lacks it. The group starts at the beginning of the
 * stream: orders written before the first relay ran are delivered too. */
static void fs__ensure_groups(fs_relay_t *r)
{
    if (!fs_redis_ready(r->writer) || r->stopping) return;
    for (size_t i = 0; i < fs_relay_stream_count(r); i++) {
        fs_relay_stream_t *s = fs_relay_stream_at(r, i);
        if (s->group_ready || s->creating) continue;
        s->creating = 1;
        const char *argv[] = {"XGROUP", "CREATE", s->key, r->cfg->group, "0", "MKSTREAM"};
        size_t lens[6];
        for (int k = 0; k < 6; k++) lens[k] = strlen(argv[k]);
        fs_redis_command(r->writer, fs__on_group, s, 6, argv, lens);
    }
}

/* A stream or its group vanished (FLUSHALL, a new Redis): create them again, re-read own entries. */
static void fs__groups_lost(fs_relay_t *r)
{
    fs_warn("relay_groups_missing", "streams=%zu", fs_relay_stream_count(r));
    for (size_t i = 0; i < fs_relay_stream_count(r); i++) {
        fs_relay_stream_t *s = fs_relay_stream_at(r, i);
        s->group_ready = 0;
        s->own_done = 0;
        strcpy(s->own_cursor, "0");
        strcpy(s->claim_cursor, "0-0");
    }
    r->ngroups_ready = 0;
    fs__ensure_groups(r);
}

/* ---- discovery ---- */

static void fs__on_skus(redisReply *reply, int err, void *arg)
{
    fs_relay_t *r = arg;
    r->discovering = 0;
    if (err || reply->type != REDIS_REPLY_ARRAY) {
        if (!err) {
            char msg[200];
            fs_warn("relay_discovery_failed", "error=%s",
                    fs_log_quote(msg, sizeof msg, reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply"));
        }
        return;
    }
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const redisReply *l = reply->element[i], *s = reply->element[i + 1];
        if (l->type != REDIS_REPLY_STRING || s->type != REDIS_REPLY_STRING) continue;
        fs__sku_add(r, l->str, l->len, s->str, s->len);
    }
    fs__ensure_groups(r);
}

/* Returns 1 when the query was sent. */
static int fs__discover(fs_relay_t *r)
{
    if (r->discovering || r->stopping || !fs_redis_ready(r->writer)) return 0;
    r->discovering = 1;
    const char *argv[] = {"FCALL_RO", "fs_relay_skus", "1", "fs:launches"};
    size_t lens[] = {8, 13, 1, 11};
    fs_redis_command(r->writer, fs__on_skus, r, 4, argv, lens);
    return 1;
}

/* ---- reading new entries ---- */

/* Adds the entries of one stream's reply ([[id, [field, value, ...]], ...]). Taken-over jobs are
 * collected into *loading (ids) for one HMGET of their attempt records. */
typedef struct {
    fs_relay_t *r;
    fs_relay_stream_t *s;
    size_t n;
    char (*ids)[48];
    char **order_ids;
} fs__load_t;

static void fs__on_loaded(redisReply *reply, int err, void *arg)
{
    fs__load_t *L = arg;
    fs_relay_t *r = L->r;
    for (size_t i = 0; i < L->n; i++) {
        fs_relay_job_t *j = fs_relay_job_find(r, L->s, L->ids[i], strlen(L->ids[i]));
        int attempts = 0;
        int64_t last_ms = 0;
        if (!err && reply->type == REDIS_REPLY_ARRAY && i < reply->elements &&
            reply->element[i]->type == REDIS_REPLY_STRING) {
            /* "<attempts>|<last_attempt_ms>|<error>" */
            const char *v = reply->element[i]->str;
            attempts = atoi(v);
            const char *bar = strchr(v, '|');
            if (bar) last_ms = strtoll(bar + 1, NULL, 10);
        }
        if (j) fs_relay_job_loaded(r, j, attempts, last_ms);
        free(L->order_ids[i]);
    }
    free(L->ids);
    free(L->order_ids);
    free(L);
}

static size_t fs__add_entries(fs_relay_t *r, fs_relay_stream_t *s, const redisReply *entries,
                              int taken_over, char *last_id, size_t last_cap)
{
    if (!entries || entries->type != REDIS_REPLY_ARRAY) return 0;
    fs__load_t *L = NULL;
    if (taken_over) {
        L = fs_xcalloc(1, sizeof *L);
        L->r = r;
        L->s = s;
        L->ids = fs_xcalloc(entries->elements + 1, sizeof *L->ids);
        L->order_ids = fs_xcalloc(entries->elements + 1, sizeof *L->order_ids);
    }
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 || e->element[0]->type != REDIS_REPLY_STRING)
            continue;
        const redisReply *id = e->element[0];
        if (last_id && id->len < last_cap) {
            memcpy(last_id, id->str, id->len);
            last_id[id->len] = 0;
        }
        const redisReply *fields = e->element[1]->type == REDIS_REPLY_ARRAY ? e->element[1] : NULL;
        fs_relay_job_t *j = fs_relay_job_add(r, s, id->str, id->len, fields, taken_over);
        if (j && taken_over && j->state == FS_JOB_LOADING) {
            memcpy(L->ids[L->n], j->id, sizeof L->ids[0]);
            L->order_ids[L->n] = fs_xstrndup(j->order_id, strlen(j->order_id));
            L->n++;
        }
    }
    if (L && L->n == 0) {
        free(L->ids);
        free(L->order_ids);
        free(L);
    } else if (L) {
        size_t argc = 2 + L->n;
        const char **argv = fs_xmalloc(argc * sizeof *argv);
        size_t *lens = fs_xmalloc(argc * sizeof *lens);
        argv[0] = "HMGET";
        argv[1] = s->sku->delivery_key;
        for (size_t i = 0; i < L->n; i++) argv[2 + i] = L->order_ids[i];
        for (size_t i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
        fs_redis_command(r->writer, fs__on_loaded, L, (int)argc, argv, lens);
        free(argv);
        free(lens);
    }
    return entries->elements;
}

static void fs__on_read_timer(uv_timer_t *t)
{
    fs__read(t->data);
}

static void fs__read_later(fs_relay_t *r, uint64_t ms)
{
    r->read_timer.data = r;
    uv_timer_start(&r->read_timer, fs__on_read_timer, ms, 0);
}

static void fs__on_read(redisReply *reply, int err, void *arg)
{
    fs_relay_t *r = arg;
    r->reading = 0;
    if (err) {
        if (!r->stopping) fs__read_later(r, err == FS_EUNAVAIL ? 100 : 200);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (strstr(reply->str, "NOGROUP")) {
            fs__groups_lost(r);
        } else {
            char msg[200];
            fs_warn("relay_read_failed", "error=%s", fs_log_quote(msg, sizeof msg, reply->str));
            fs__read_later(r, 500);
        }
        return;
    }
    if (reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < reply->elements; i++) {
            const redisReply *sr = reply->element[i];
            if (sr->type != REDIS_REPLY_ARRAY || sr->elements != 2 || sr->element[0]->type != REDIS_REPLY_STRING)
                continue;
            fs_relay_stream_t *s = fs_relay_stream_find(r, sr->element[0]->str, sr->element[0]->len);
            if (s) fs__add_entries(r, s, sr->element[1], 0, NULL, 0);
        }
    }
    fs__read(r);
}

/* One XREADGROUP ... BLOCK over every stream with a group, for new entries (">"). At most
 * max_pending entries are held: each stream may bring COUNT = free / streams (at least 1). */
static void fs__read(fs_relay_t *r)
{
    if (r->reading || r->stopping || r->ngroups_ready == 0 || !fs_redis_ready(r->reader)) return;
    size_t held = fs_relay_jobs_held(r);
    if (held >= (size_t)r->cfg->max_pending) return;
    size_t count = ((size_t)r->cfg->max_pending - held) / r->ngroups_ready;
    if (count < 1) count = 1;
    if (count > (size_t)r->cfg->batch) count = (size_t)r->cfg->batch;
    char cnt[24], blk[24];
    snprintf(cnt, sizeof cnt, "%zu", count);
    snprintf(blk, sizeof blk, "%d", r->cfg->block_ms);
    size_t argc = 9 + 2 * r->ngroups_ready, k = 0;
    const char **argv = fs_xmalloc(argc * sizeof *argv);
    size_t *lens = fs_xmalloc(argc * sizeof *lens);
    argv[k++] = "XREADGROUP";
    argv[k++] = "GROUP";
    argv[k++] = r->cfg->group;
    argv[k++] = r->consumer;
    argv[k++] = "COUNT";
    argv[k++] = cnt;
    argv[k++] = "BLOCK";
    argv[k++] = blk;
    argv[k++] = "STREAMS";
    size_t first_key = k;
    for (size_t i = 0; i < fs_relay_stream_count(r); i++) {
        fs_relay_stream_t *s = fs_relay_stream_at(r, i);
        if (s->group_ready && k < argc) argv[k++] = s->key;
    }
    size_t nkeys = k - first_key;
    for (size_t i = 0; i < nkeys; i++) argv[k++] = ">";
    for (size_t i = 0; i < k; i++) lens[i] = strlen(argv[i]);
    r->reading = 1;
    fs_redis_command(r->reader, fs__on_read, r, (int)k, argv, lens);
    free(argv);
    free(lens);
}

void fs_relay_streams_kick(fs_relay_t *r)
{
    fs__read(r);
}

/* ---- taking over: own pending entries after a restart, then idle entries of anyone ---- */

static int fs__claim_room(fs_relay_t *r, char *cnt, size_t cap)
{
    size_t held = fs_relay_jobs_held(r);
    if (held >= (size_t)r->cfg->max_pending) return 0;
    size_t n = (size_t)r->cfg->max_pending - held;
    if (n > (size_t)r->cfg->batch) n = (size_t)r->cfg->batch;
    snprintf(cnt, cap, "%zu", n);
    return (int)n;
}

static void fs__on_own(redisReply *reply, int err, void *arg)
{
    fs_relay_stream_t *s = arg;
    fs_relay_t *r = s->sku->relay;
    if (err || reply->type == REDIS_REPLY_ERROR) {
        if (!err && strstr(reply->str, "NOGROUP")) fs__groups_lost(r);
        r->claiming = 0;
        return;
    }
    size_t n = 0;
    /* [[key, [[id, fields], ...]]] or nil when there is nothing */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2)
        n = fs__add_entries(r, s, reply->element[0]->element[1], 1, s->own_cursor, sizeof s->own_cursor);
    if (n == 0) s->own_done = 1;
    fs__claim_next(r);
}

static void fs__on_claimed(redisReply *reply, int err, void *arg)
{
    fs_relay_stream_t *s = arg;
    fs_relay_t *r = s->sku->relay;
    if (err || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING) {
        if (!err && reply->type == REDIS_REPLY_ERROR && strstr(reply->str, "NOGROUP")) fs__groups_lost(r);
        r->claiming = 0;
        return;
    }
    const redisReply *cur = reply->element[0];
    if (cur->len < sizeof s->claim_cursor) {
        memcpy(s->claim_cursor, cur->str, cur->len);
        s->claim_cursor[cur->len] = 0;
    }
    size_t n = fs__add_entries(r, s, reply->element[1], 1, NULL, 0);
    if (n > 0) fs_info("relay_taken_over", "stream=%s entries=%zu", s->key, n);
    /* Go on with this stream while its pending list has more, a few calls per pass at most. */
    if (strcmp(s->claim_cursor, "0-0") == 0 || ++r->claim_calls >= FS__CLAIM_CALLS_PER_PASS) {
        r->claim_pos++;
        r->claim_calls = 0;
    }
    fs__claim_next(r);
}

static void fs__claim_next(fs_relay_t *r)
{
    char cnt[24], idle[24];
    while (r->claim_pos < fs_relay_stream_count(r)) {
        fs_relay_stream_t *s = fs_relay_stream_at(r, r->claim_pos);
        if (!s->group_ready) {
            r->claim_pos++;
            continue;
        }
        if (r->stopping || !fs__claim_room(r, cnt, sizeof cnt)) break;
        if (!s->own_done) {
            const char *argv[] = {"XREADGROUP", "GROUP", r->cfg->group, r->consumer, "COUNT",
                                  cnt, "STREAMS", s->key, s->own_cursor};
            size_t lens[9];
            for (int i = 0; i < 9; i++) lens[i] = strlen(argv[i]);
            fs_redis_command(r->writer, fs__on_own, s, 9, argv, lens);
            return;
        }
        snprintf(idle, sizeof idle, "%d", r->cfg->claim_idle_ms);
        const char *argv[] = {"XAUTOCLAIM", s->key, r->cfg->group, r->consumer, idle,
                              s->claim_cursor, "COUNT", cnt};
        size_t lens[8];
        for (int i = 0; i < 8; i++) lens[i] = strlen(argv[i]);
        fs_redis_command(r->writer, fs__on_claimed, s, 8, argv, lens);
        return;
    }
    r->claiming = 0;
}

static void fs__claim_pass(fs_relay_t *r)
{
    if (r->claiming || r->stopping || !fs_redis_ready(r->writer)) return;
    r->claiming = 1;
    r->claim_pos = 0;
    r->claim_calls = 0;
    r->last_claim_ns = fs_mono_ns();
    fs__claim_next(r);
}

/* ---- heartbeat ---- */

typedef struct {
    fs_relay_t *r;
    fs_relay_stream_t *s;
} fs__touch_t;

static void fs__on_touched(redisReply *reply, int err, void *arg)
{
    fs__touch_t *t = arg;
    fs_relay_t *r = t->r;
    r->touching--;
    if (!err && reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < reply->elements; i++) {
            const redisReply *id = reply->element[i];
            if (id->type != REDIS_REPLY_STRING) continue;
            fs_relay_job_t *j = fs_relay_job_find(r, t->s, id->str, id->len);
            if (j && !j->lost) fs_relay_job_lost(r, j);
        }
    } else if (!err) {
        char msg[200];
        fs_warn("relay_heartbeat_failed", "stream=%s error=%s", t->s->key,
                fs_log_quote(msg, sizeof msg, reply->type == REDIS_REPLY_ERROR ? reply->str : "?"));
    }
    free(t);
}

static void fs__touch(fs_relay_t *r)
{
    if (r->touching || !fs_redis_ready(r->writer)) return;
    for (size_t i = 0; i < fs_relay_stream_count(r); i++) {
        fs_relay_stream_t *s = fs_relay_stream_at(r, i);
        fs_relay_job_t *j = s->jobs;
        while (j) {
            const char *argv[6 + FS__TOUCH_CHUNK];
            size_t lens[6 + FS__TOUCH_CHUNK], k = 0;
            argv[k++] = "FCALL";
            argv[k++] = "fs_relay_touch";
            argv[k++] = "1";
            argv[k++] = s->key;
            argv[k++] = r->cfg->group;
            argv[k++] = r->consumer;
            size_t ids = 0;
            for (; j && ids < FS__TOUCH_CHUNK; j = j->stream_next) {
                if (j->lost) continue;
                argv[k++] = j->id;
                ids++;
            }
            if (!ids) break;
            for (size_t q = 0; q < k; q++) lens[q] = strlen(argv[q]);
            fs__touch_t *t = fs_xmalloc(sizeof *t);
            t->r = r;
            t->s = s;
            r->touching++;
            fs_redis_command(r->writer, fs__on_touched, t, (int)k, argv, lens);
        }
    }
}

/* ---- lag ---- */

static void fs__on_lag(redisReply *reply, int err, void *arg)
{
    fs_relay_t *r = arg;
    r->lag_in_flight = 0;
    if (err || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) return;
    int ok1, ok2, ok3;
    int64_t oldest = fs_reply_i64(reply->element[0], &ok1);
    int64_t count = fs_reply_i64(reply->element[1], &ok2);
    int64_t now = fs_reply_i64(reply->element[2], &ok3);
    if (!ok1 || !ok2 || !ok3) return;
    r->metrics.lag_known = 1;
    r->metrics.lag_seconds = oldest > 0 && now > oldest ? (double)(now - oldest) / 1000.0 : 0.0;
    r->metrics.backlog = count > 0 ? (uint64_t)count : 0;
}

static void fs__lag(fs_relay_t *r)
{
    if (r->lag_in_flight || !fs_redis_ready(r->writer)) return;
    size_t ns = fs_relay_stream_count(r);
    if (ns == 0) {
        r->metrics.lag_known = 1;
        r->metrics.lag_seconds = 0;
        r->metrics.backlog = 0;
        return;
    }
    size_t argc = 4 + ns, k = 0;
    const char **argv = fs_xmalloc(argc * sizeof *argv);
    size_t *lens = fs_xmalloc(argc * sizeof *lens);
    char nk[24];
    snprintf(nk, sizeof nk, "%zu", ns);
    argv[k++] = "FCALL_RO";
    argv[k++] = "fs_relay_lag";
    argv[k++] = nk;
    for (size_t i = 0; i < ns; i++) argv[k++] = fs_relay_stream_at(r, i)->key;
    argv[k++] = r->cfg->group;
    for (size_t i = 0; i < k; i++) lens[i] = strlen(argv[i]);
    r->lag_in_flight = 1;
    fs_redis_command(r->writer, fs__on_lag, r, (int)k, argv, lens);
    free(argv);
    free(lens);
}

/* ---- periodic work ---- */

void fs_relay_streams_tick(fs_relay_t *r, uint64_t now)
{
    if (r->stopping) return;
    const fs_relay_config_t *c = r->cfg;
    if (now >= r->next_discover_ns && fs__discover(r))
        r->next_discover_ns = now + (uint64_t)c->discover_interval_ms * 1000000u;
    /* Claims: at once while some stream's own entries were not re-read yet, then every
     * claim_idle_ms / 4 (so an abandoned entry waits at most 1.25 x claim_idle_ms). */
    uint64_t claim_every = (uint64_t)c->claim_idle_ms * 1000000u / 4;
    if (claim_every < 50000000u) claim_every = 50000000u;
    int own_pending = 0;
    for (size_t i = 0; i < fs_relay_stream_count(r) && !own_pending; i++) {
        fs_relay_stream_t *s = fs_relay_stream_at(r, i);
        own_pending = s->group_ready && !s->own_done;
    }
    if (own_pending || now - r->last_claim_ns >= claim_every) fs__claim_pass(r);
    if (now >= r->next_touch_ns) {
        r->next_touch_ns = now + (uint64_t)c->claim_idle_ms * 1000000u / 3;
        fs__touch(r);
    }
    if (now >= r->next_lag_ns) {
        r->next_lag_ns = now + (uint64_t)FS__LAG_INTERVAL_MS * 1000000u;
        fs__lag(r);
    }
    if (now >= r->next_fin_retry_ns) {
        r->next_fin_retry_ns = now + (uint64_t)FS__FIN_RETRY_MS * 1000000u;
        fs_relay_jobs_retry_finishing(r);
    }
    fs__read(r);
}

void fs_relay_streams_start(fs_relay_t *r)
{
    r->next_discover_ns = r->next_touch_ns = r->next_lag_ns = r->next_fin_retry_ns = 0;
    r->last_claim_ns = 0;
}
