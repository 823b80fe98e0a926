/* Asynchronous Redis client with deadlines, reconnects and library loading (see redis.h). */
#include "redis.h"
#include "../common/buf.h"
#include "../common/log.h"
#include "../common/timeutil.h"
#include "flashsale/error.h"

#include "redis_tls.h"
#include "redis_uv.h"
#include <hiredis/async.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

typedef enum { FS__DOWN, FS__RESOLVING, FS__CONNECTING, FS__LOADING, FS__READY } fs__rstate_t;

typedef struct fs__cmd {
    struct fs__cmd *prev, *next;
    fs_redis_t *r;
    fs_redis_cb cb;
    void *arg;
    uint64_t deadline_ns;
    char *fmt; /* the formatted command, kept for one retry after a library reload */
    size_t fmtlen, fmtcap;
    unsigned retried : 1, internal : 1;
} fs__cmd_t;

struct fs_redis {
    uv_loop_t *loop;
    fs_redis_opts_t o;
    char *host, *user, *password; /* copies of o's */
    fs_redis_lookup_t *lookup;    /* host's address being looked up (FS__RESOLVING) */
    redisAsyncContext *ac;
    fs__rstate_t state;
    uv_timer_t timer;
    uint64_t connect_deadline_ns, reconnect_at_ns;
    int backoff_ms;
    int drop_err;      /* what pending commands fail with while the connection is torn down */
    int closing;
    int reload_in_flight;
    fs__cmd_t *head, *tail;
    size_t in_flight;
    fs__cmd_t *spare; /* answered commands kept for reuse, with their buffers (FS__SPARE_MAX) */
    size_t nspare;
    fs_redis_stats_t stats;
};

/* Commands kept for reuse: the reservation path sends one or more per loop turn, each of which
 * would otherwise cost two allocations and two frees. */
#define FS__SPARE_MAX 32

static void fs__connect(fs_redis_t *r);
static void fs__send_internal(fs_redis_t *r, fs_redis_cb cb, int argc, const char **argv,
                              const size_t *lens, int timeout_ms);

int64_t fs_reply_i64(const redisReply *rep, int *ok)
{
    if (ok) *ok = 1;
    if (rep && rep->type == REDIS_REPLY_INTEGER) return rep->integer;
    if (rep && (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS) && rep->len > 0 &&
        rep->len < 24) {
        char tmp[24], *end;
        memcpy(tmp, rep->str, rep->len);
        tmp[rep->len] = 0;
        long long v = strtoll(tmp, &end, 10);
        if (*end == 0) return v;
    }
    if (ok) *ok = 0;
    return 0;
}

const char *fs_reply_str(const redisReply *rep, size_t *len)
{
    if (rep && (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS ||
                rep->type == REDIS_REPLY_ERROR)) {
        *len = rep->len;
        return rep->str;
    }
    *len = 0;
    return "";
}

int fs_redis_refused(const redisReply *r)
{
    /* Redis's error codes for "not now": out of memory (maxmemory with noeviction), a script or
     * function running past its limit, the dataset loading, a replica that cannot take writes or
     * lost its primary, writes stopped after a failed save, a cluster busy or down. */
    static const char *const codes[] = {"OOM ",      "BUSY ",     "LOADING ",     "READONLY ",
                                        "MISCONF ",  "TRYAGAIN ", "CLUSTERDOWN ", "MASTERDOWN ",
                                        "NOREPLICAS "};
    static _Thread_local uint64_t logged_ns;
    static _Thread_local unsigned long unlogged;
    if (!r || r->type != REDIS_REPLY_ERROR || !r->str) return 0;
    size_t i = 0, n = sizeof codes / sizeof codes[0];
    while (i < n && strncmp(r->str, codes[i], strlen(codes[i])) != 0) i++;
    if (i == n) return 0;
    uint64_t now = fs_mono_ns();
    if (logged_ns && now - logged_ns < 1000000000u) {
        unlogged++;
        return 1;
    }
    char msg[200];
    fs_warn("redis_refused", "error=%s not_logged_before=%lu",
            fs_log_quote(msg, sizeof msg, r->str), unlogged);
    logged_ns = now;
    unlogged = 0;
    return 1;
}

static void fs__set_ready(fs_redis_t *r, int ready)
{
    int was = r->state == FS__READY;
    if (ready) r->state = FS__READY;
    if (was != ready && r->o.on_ready) r->o.on_ready(ready, r->o.arg);
}

static void fs__unlink(fs_redis_t *r, fs__cmd_t *c)
{
    if (c->prev) c->prev->next = c->next;
    else r->head = c->next;
    if (c->next) c->next->prev = c->prev;
    else r->tail = c->prev;
    r->in_flight--;
}

static void fs__schedule_reconnect(fs_redis_t *r)
{
    r->state = FS__DOWN;
    /* Exponential backoff with jitter: 100 ms doubling to 2 s. */
    int jitter = r->backoff_ms > 1 ? rand() % (r->backoff_ms / 2 + 1) : 0;
    r->reconnect_at_ns = fs_mono_ns() + (uint64_t)(r->backoff_ms + jitter) * 1000000u;
    r->backoff_ms = r->backoff_ms * 2 > 2000 ? 2000 : r->backoff_ms * 2;
}

/* A command record with room for a formatted command of `need` bytes: a spare one if there is. */
static fs__cmd_t *fs__cmd_get(fs_redis_t *r, size_t need)
{
    fs__cmd_t *c = r->spare;
    if (c) {
        r->spare = c->next;
        r->nspare--;
    } else {
        c = fs_xmalloc(sizeof *c);
        c->fmt = NULL;
        c->fmtcap = 0;
    }
    char *fmt = c->fmt;
    size_t cap = c->fmtcap;
    if (cap < need) {
        free(fmt);
        cap = need < 256 ? 256 : need;
        fmt = fs_xmalloc(cap);
    }
    memset(c, 0, sizeof *c);
    c->fmt = fmt;
    c->fmtcap = cap;
    return c;
}

static void fs__cmd_put(fs_redis_t *r, fs__cmd_t *c)
{
    if (r->nspare < FS__SPARE_MAX && !r->closing) {
        c->next = r->spare;
        r->spare = c;
        r->nspare++;
        return;
    }
    free(c->fmt);
    free(c);
}

static void fs__on_reply(redisAsyncContext *ac, void *rep, void *privdata)
{
    fs__cmd_t *c = privdata;
    fs_redis_t *r = c->r;
    redisReply *reply = rep;
    fs__unlink(r, c);
    if (!reply) {
        int err = r->drop_err ? r->drop_err : FS_EIO;
        r->stats.errors++;
        c->cb(NULL, err, c->arg);
    } else if (reply->type == REDIS_REPLY_ERROR && !c->retried && !c->internal &&
               strstr(reply->str, "Function not found") && r->ac == ac) {
        /* The library is gone (FUNCTION FLUSH, or a fresh Redis behind the same address): load it
         * and send the command again. Both go down the same connection, so they run in order. */
        fs_warn("redis_library_missing", "redis=%s", r->o.name);
        if (!r->reload_in_flight) {
            const char *argv[] = {"FUNCTION", "LOAD", "REPLACE", r->o.library};
            size_t lens[] = {8, 4, 7, r->o.library_len};
            r->reload_in_flight = 1;
            fs__send_internal(r, NULL, 4, argv, lens, r->o.timeout_ms < 5000 ? 5000 : r->o.timeout_ms);
        }
        c->retried = 1;
        c->deadline_ns = fs_mono_ns() + (uint64_t)r->o.timeout_ms * 1000000u;
        c->prev = r->tail;
        c->next = NULL;
        if (r->tail) r->tail->next = c;
        else r->head = c;
        r->tail = c;
        r->in_flight++;
        if (redisAsyncFormattedCommand(ac, fs__on_reply, c, c->fmt, c->fmtlen) != REDIS_OK) {
            fs__unlink(r, c);
            c->cb(NULL, FS_EIO, c->arg);
            fs__cmd_put(r, c);
        }
        return;
    } else {
        if (reply->type == REDIS_REPLY_ERROR) r->stats.errors++;
        c->cb(reply, FS_OK, c->arg);
    }
    fs__cmd_put(r, c);
}

/* The most bytes fs__format_command writes for these arguments, its final NUL included. */
static size_t fs__format_bound(int argc, const size_t *lens)
{
    size_t total = 1 + FS_I64_MAX_LEN + 2 + 1;
    for (int i = 0; i < argc; i++) total += 1 + FS_I64_MAX_LEN + 2 + lens[i] + 2;
    return total;
}

/* The RESP form of a command, "*argc\r\n" then "$len\r\narg\r\n" per argument, into p (room
 * for fs__format_bound bytes); returns its length. hiredis's redisFormatCommandArgv does the same
 * with one sprintf per argument, which showed in profiles of the reservation path (five arguments
 * per request). */
static size_t fs__format_command(char *p, int argc, const char **argv, const size_t *lens)
{
    char *w = p;
    *w++ = '*';
    w += fs_fmt_i64(w, argc);
    *w++ = '\r', *w++ = '\n';
    for (int i = 0; i < argc; i++) {
        *w++ = '$';
        w += fs_fmt_i64(w, (int64_t)lens[i]);
        *w++ = '\r', *w++ = '\n';
        memcpy(w, argv[i], lens[i]);
        w += lens[i];
        *w++ = '\r', *w++ = '\n';
    }
    *w = 0;
    return (size_t)(w - p);
}

static void fs__enqueue(fs_redis_t *r, fs_redis_cb cb, void *arg, int argc, const char **argv,
                        const size_t *lens, int timeout_ms, int internal)
{
    fs__cmd_t *c = fs__cmd_get(r, fs__format_bound(argc, lens));
    c->fmtlen = fs__format_command(c->fmt, argc, argv, lens);
    c->r = r;
    c->cb = cb;
    c->arg = arg;
    c->internal = internal ? 1 : 0;
    c->deadline_ns = fs_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    c->prev = r->tail;
    if (r->tail) r->tail->next = c;
    else r->head = c;
    r->tail = c;
    r->in_flight++;
    r->stats.commands++;
    if (redisAsyncFormattedCommand(r->ac, fs__on_reply, c, c->fmt, c->fmtlen) != REDIS_OK) {
        fs__unlink(r, c);
        fs__cmd_put(r, c);
        r->stats.errors++;
        cb(NULL, FS_EIO, arg);
    }
}

void fs_redis_command(fs_redis_t *r, fs_redis_cb cb, void *arg, int argc, const char **argv,
                      const size_t *lens)
{
    if (r->state != FS__READY || !r->ac) {
        cb(NULL, FS_EUNAVAIL, arg);
        return;
    }
    fs__enqueue(r, cb, arg, argc, argv, lens, r->o.timeout_ms, 0);
}

/* ---- connection setup: SELECT, FUNCTION LOAD ---- */

static void fs__drop(fs_redis_t *r, const char *reason, int err);

static void fs__on_internal(redisReply *reply, int err, void *arg)
{
    fs_redis_t *r = arg;
    if (err) return; /* the connection is already being rebuilt */
    if (reply->type == REDIS_REPLY_ERROR) {
        char msg[300];
        fs_error("redis_setup_failed", "redis=%s error=%s", r->o.name,
                 fs_log_quote(msg, sizeof msg, reply->str));
        r->drop_err = FS_EUNAVAIL;
        /* Dropping from inside a hiredis callback is deferred by hiredis until it returns. */
        fs__drop(r, "setup failed", FS_EUNAVAIL);
    }
}

static void fs__on_library_loaded(redisReply *reply, int err, void *arg)
{
    fs_redis_t *r = arg;
    r->reload_in_flight = 0;
    if (err || reply->type == REDIS_REPLY_ERROR) {
        fs__on_internal(reply, err, arg);
        return;
    }
    r->backoff_ms = 100;
    if (r->state != FS__READY) fs_info("redis_ready", "redis=%s", r->o.name);
    fs__set_ready(r, 1);
}

static void fs__send_internal(fs_redis_t *r, fs_redis_cb cb, int argc, const char **argv,
                              const size_t *lens, int timeout_ms)
{
    fs__enqueue(r, cb ? cb : fs__on_library_loaded, r, argc, argv, lens, timeout_ms, 1);
}

static void fs__on_connect(const redisAsyncContext *ac, int status)
{
    fs_redis_t *r = ac->data;
    if (!r || r->ac != ac) return;
    if (status != REDIS_OK) {
        fs_warn("redis_connect_failed", "redis=%s error=\"%s\" retry_ms=%d", r->o.name, ac->errstr,
                r->backoff_ms);
        r->ac = NULL; /* hiredis frees a context whose connect failed */
        fs__schedule_reconnect(r);
        return;
    }
    r->state = FS__LOADING;
    int tmo = r->o.timeout_ms < 5000 ? 5000 : r->o.timeout_ms;
    if (r->o.password[0]) { /* a refusal drops the connection (fs__on_internal) */
        int with_user = r->o.user[0] != 0;
        const char *argv[] = {"AUTH", with_user ? r->o.user : r->o.password, r->o.password};
        size_t lens[] = {4, strlen(argv[1]), strlen(r->o.password)};
        fs__send_internal(r, fs__on_internal, with_user ? 3 : 2, argv, lens, tmo);
    }
    if (r->o.db) {
        char db[16];
        int n = snprintf(db, sizeof db, "%d", r->o.db);
        const char *argv[] = {"SELECT", db};
        size_t lens[] = {6, (size_t)n};
        fs__send_internal(r, fs__on_internal, 2, argv, lens, tmo);
    }
    const char *argv[] = {"FUNCTION", "LOAD", "REPLACE", r->o.library};
    size_t lens[] = {8, 4, 7, r->o.library_len};
    fs__send_internal(r, NULL, 4, argv, lens, tmo);
}

static void fs__on_disconnect(const redisAsyncContext *ac, int status)
{
    fs_redis_t *r = ac->data;
    if (!r || r->ac != ac) return; /* we dropped it ourselves */
    fs_warn("redis_disconnected", "redis=%s error=\"%s\"", r->o.name,
            status == REDIS_OK ? "closed" : ac->errstr);
    r->ac = NULL;
    fs__set_ready(r, 0);
    fs__schedule_reconnect(r);
    r->stats.reconnects++;
}

/* Connects to ip, an address: hiredis does no name lookup then; with TLS, through a pump. */
static void fs__connect_to(fs_redis_t *r, const char *ip)
{
    char path[108];
    int rc = r->o.tls ? fs_redis_tls_dial(r->loop, r->o.tls, ip, r->o.port, r->host, path,
                                          sizeof path)
                      : 0;
    if (rc < 0) {
        fs_warn("redis_connect_failed", "redis=%s error=\"%s\"", r->o.name, uv_strerror(rc));
        fs__schedule_reconnect(r);
        return;
    }
    redisAsyncContext *ac = r->o.tls ? redisAsyncConnectUnix(path) : redisAsyncConnect(ip, r->o.port);
    if (!ac || ac->err) {
        fs_warn("redis_connect_failed", "redis=%s error=\"%s\"", r->o.name,
                ac ? ac->errstr : "out of memory");
        if (ac) redisAsyncFree(ac);
        fs__schedule_reconnect(r);
        return;
    }
    ac->data = r;
    if (fs_redis_uv_attach(ac, r->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        fs__schedule_reconnect(r);
        return;
    }
    redisAsyncSetConnectCallback(ac, fs__on_connect);
    redisAsyncSetDisconnectCallback(ac, fs__on_disconnect);
    r->ac = ac;
    r->state = FS__CONNECTING;
    r->drop_err = 0;
    r->connect_deadline_ns =
        fs_mono_ns() + (uint64_t)(r->o.timeout_ms < 1000 ? 1000 : r->o.timeout_ms) * 1000000u;
}

static void fs__on_resolved(void *owner, const char *ip, const char *err)
{
    fs_redis_t *r = owner;
    r->lookup = NULL;
    if (ip) {
        fs__connect_to(r, ip);
        return;
    }
    fs_warn("redis_lookup_failed", "redis=%s host=%s error=\"%s\" retry_ms=%d", r->o.name, r->host,
            err, r->backoff_ms);
    fs__schedule_reconnect(r);
}

/* Connects to host, looking its name up off the loop first (redis_uv.h). */
static void fs__connect(fs_redis_t *r)
{
    r->lookup = fs_redis_lookup(r->loop, r->host, fs__on_resolved, r);
    /* no deadline of ours on a lookup: the resolver has its own (resolv.conf) */
    if (r->lookup) r->state = FS__RESOLVING;
}

/* Tears the connection down; every pending command fails with err. */
static void fs__drop(fs_redis_t *r, const char *reason, int err)
{
    redisAsyncContext *ac = r->ac;
    if (!ac) return;
    fs_warn("redis_dropped", "redis=%s reason=\"%s\" in_flight=%zu", r->o.name, reason, r->in_flight);
    r->ac = NULL;
    fs__set_ready(r, 0);
    fs__schedule_reconnect(r);
    r->stats.reconnects++;
    r->drop_err = err;
    ac->data = NULL;
    redisAsyncFree(ac); /* fires every pending callback with a NULL reply */
    r->drop_err = 0;
}

static void fs__on_tick(uv_timer_t *t)
{
    fs_redis_t *r = t->data;
    uint64_t now = fs_mono_ns();
    if (r->state == FS__DOWN) {
        if (now >= r->reconnect_at_ns) fs__connect(r);
    } else if (r->state == FS__CONNECTING) {
        if (now >= r->connect_deadline_ns) fs__drop(r, "connect timed out", FS_ETIMEDOUT);
    } else if (r->head && now >= r->head->deadline_ns) {
        r->stats.timeouts++;
        fs__drop(r, "command timed out", FS_ETIMEDOUT);
    }
}

fs_redis_t *fs_redis_new(uv_loop_t *loop, const fs_redis_opts_t *o)
{
    fs_redis_t *r = fs_xcalloc(1, sizeof *r);
    r->loop = loop;
    r->o = *o;
    r->host = fs_xstrndup(o->host, strlen(o->host));
    r->o.host = r->host;
    const char *user = o->user ? o->user : "", *password = o->password ? o->password : "";
    r->o.user = r->user = fs_xstrndup(user, strlen(user));
    r->o.password = r->password = fs_xstrndup(password, strlen(password));
    r->o.name = o->name ? o->name : "redis";
    r->backoff_ms = 100;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    int tick = o->timeout_ms / 10;
    if (tick < 5) tick = 5;
    if (tick > 50) tick = 50;
    uv_timer_start(&r->timer, fs__on_tick, (uint64_t)tick, (uint64_t)tick);
    fs__connect(r);
    return r;
}

int fs_redis_ready(const fs_redis_t *r)
{
    return r->state == FS__READY;
}

size_t fs_redis_in_flight(const fs_redis_t *r)
{
    return r->in_flight;
}

fs_redis_stats_t fs_redis_stats(const fs_redis_t *r)
{
    return r->stats;
}

static void fs__on_timer_closed(uv_handle_t *h)
{
    fs_redis_t *r = h->data;
    while (r->spare) {
        fs__cmd_t *c = r->spare;
        r->spare = c->next;
        free(c->fmt);
        free(c);
    }
    free(r->host);
    free(r->user);
    OPENSSL_cleanse(r->password, strlen(r->password));
    free(r->password);
    free(r);
}

void fs_redis_close(fs_redis_t *r)
{
    if (r->closing) return;
    r->closing = 1;
    r->o.on_ready = NULL;
    if (r->lookup) fs_redis_lookup_detach(r->lookup);
    r->lookup = NULL;
    if (r->ac) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        ac->data = NULL;
        r->drop_err = FS_EIO;
        redisAsyncFree(ac);
    }
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, fs__on_timer_closed);
}
