/* Pub/sub subscriber with reconnects (see redis_sub.h). */
#include "redis_sub.h"
#include "../common/log.h"
#include "../common/timeutil.h"

#include "redis_tls.h"
#include "redis_uv.h"
#include <hiredis/async.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

struct fs_redis_sub {
    uv_loop_t *loop;
    char *host, *channel, *user, *password;
    int port;
    fs_redis_sub_cb cb;
    void *arg;
    redisAsyncContext *ac;
    struct fs_tls_ctx *tls;    /* rediss:// (redis_tls.h); NULL: plain */
    fs_redis_lookup_t *lookup; /* the host's address being looked up (redis_uv.h) */
    uv_timer_t timer; /* reconnect backoff */
    uv_timer_t probe; /* FS_REDIS_SUB_PROBE_MS: the liveness checks (see redis_sub.h) */
    int backoff_ms;
    int timeout_ms;
    int subscribed;    /* the current connection's first SUBSCRIBE was confirmed */
    int probing;       /* a probe is out, sent at probe_ns */
    uint64_t since_ns; /* when the current connection was started */
    uint64_t probe_ns; /* when the last probe was sent (or the subscription confirmed) */
    int open_handles;  /* closing: timers not closed yet */
    uint64_t lost;     /* connections lost: closed, or dropped as silent */
    int closing;
};

static void fs__sub_connect(fs_redis_sub_t *s);

static void fs__sub_on_timer(uv_timer_t *t)
{
    fs__sub_connect(t->data);
}

static void fs__sub_retry(fs_redis_sub_t *s)
{
    if (s->closing) return;
    uv_timer_start(&s->timer, fs__sub_on_timer, (uint64_t)s->backoff_ms, 0);
    s->backoff_ms = s->backoff_ms * 2 > 2000 ? 2000 : s->backoff_ms * 2;
}

static void fs__sub_on_message(redisAsyncContext *ac, void *rep, void *privdata)
{
    fs_redis_sub_t *s = privdata;
    redisReply *r = rep;
    if (!r || !s || s->ac != ac || r->type != REDIS_REPLY_ARRAY || r->elements != 3) return;
    const redisReply *kind = r->element[0];
    if (kind->type != REDIS_REPLY_STRING) return;
    if (strcmp(kind->str, "subscribe") == 0 && s->subscribed) {
        s->probing = 0; /* a probe's answer: the connection is alive */
    } else if (strcmp(kind->str, "subscribe") == 0) {
        s->subscribed = 1;
        s->probe_ns = fs_mono_ns();
        s->backoff_ms = 100;
        fs_debug("redis_subscribed", "channel=%s", s->channel);
        s->cb(NULL, 0, s->arg);
    } else if (strcmp(kind->str, "message") == 0 && r->element[2]->type == REDIS_REPLY_STRING) {
        s->cb(r->element[2]->str, r->element[2]->len, s->arg);
    }
}

static void fs__sub_on_auth(redisAsyncContext *ac, void *rep, void *privdata)
{
    fs_redis_sub_t *s = privdata;
    redisReply *r = rep;
    if (!r || !s || s->ac != ac || r->type != REDIS_REPLY_ERROR) return;
    char msg[200];
    fs_warn("redis_subscription_auth_failed", "channel=%s error=%s", s->channel,
            fs_log_quote(msg, sizeof msg, r->str));
}

static void fs__sub_on_connect(const redisAsyncContext *ac, int status)
{
    fs_redis_sub_t *s = ac->data;
    if (!s || s->ac != ac) return;
    if (status != REDIS_OK) {
        s->ac = NULL; /* hiredis frees it */
        fs__sub_retry(s);
    }
}

/* Drops the current connection (silent past its deadline) and starts over after the back-off. */
static void fs__sub_drop(fs_redis_sub_t *s, const char *what)
{
    redisAsyncContext *ac = s->ac;
    fs_warn("redis_subscription_stalled", "channel=%s waiting_for=%s timeout_ms=%d", s->channel,
            what, s->timeout_ms);
    s->ac = NULL;
    s->lost++;
    ac->data = NULL;
    redisAsyncFree(ac); /* no callback of ours runs: they check s->ac */
    fs__sub_retry(s);
}

static void fs__sub_on_probe(uv_timer_t *t)
{
    fs_redis_sub_t *s = t->data;
    if (!s->ac) return; /* reconnecting */
    uint64_t now = fs_mono_ns(), limit = (uint64_t)s->timeout_ms * 1000000u;
    if (!s->subscribed) {
        uint64_t first = limit < 1000000000u ? 1000000000u : limit; /* connect + subscribe */
        if (now - s->since_ns > first) fs__sub_drop(s, "subscription");
    } else if (s->probing) {
        if (now - s->probe_ns > limit) fs__sub_drop(s, "probe");
    } else if (now - s->probe_ns >= (uint64_t)FS_REDIS_SUB_PROBE_MS * 1000000u &&
               redisAsyncCommand(s->ac, fs__sub_on_message, s, "SUBSCRIBE %s", s->channel) ==
                   REDIS_OK) {
        s->probing = 1;
        s->probe_ns = now;
    }
}

static void fs__sub_on_disconnect(const redisAsyncContext *ac, int status)
{
    fs_redis_sub_t *s = ac->data;
    if (!s || s->ac != ac) return;
    s->ac = NULL;
    s->lost++;
    fs_debug("redis_unsubscribed", "channel=%s", s->channel);
    fs__sub_retry(s);
}

/* Connects to ip, an address: hiredis does no name lookup then; with TLS, through a pump. */
static void fs__sub_connect_to(fs_redis_sub_t *s, const char *ip)
{
    char path[108];
    if (s->tls && fs_redis_tls_dial(s->loop, s->tls, ip, s->port, s->host, path, sizeof path) < 0) {
        fs__sub_retry(s);
        return;
    }
    redisAsyncContext *ac = s->tls ? redisAsyncConnectUnix(path) : redisAsyncConnect(ip, s->port);
    if (!ac || ac->err || fs_redis_uv_attach(ac, s->loop) != REDIS_OK) {
        if (ac) redisAsyncFree(ac);
        fs__sub_retry(s);
        return;
    }
    ac->data = s;
    s->ac = ac;
    s->subscribed = s->probing = 0;
    s->since_ns = fs_mono_ns();
    redisAsyncSetConnectCallback(ac, fs__sub_on_connect);
    redisAsyncSetDisconnectCallback(ac, fs__sub_on_disconnect);
    /* A refused AUTH leaves the SUBSCRIBE refused too: the first subscription's deadline then
     * drops the connection and tries again, backing off. */
    if (s->password[0] && s->user[0])
        redisAsyncCommand(ac, fs__sub_on_auth, s, "AUTH %s %s", s->user, s->password);
    else if (s->password[0])
        redisAsyncCommand(ac, fs__sub_on_auth, s, "AUTH %s", s->password);
    /* Queued until connected; the callback then fires for the confirmation and every message. */
    redisAsyncCommand(ac, fs__sub_on_message, s, "SUBSCRIBE %s", s->channel);
}

static void fs__sub_on_resolved(void *owner, const char *ip, const char *err)
{
    fs_redis_sub_t *s = owner;
    s->lookup = NULL;
    if (ip) {
        fs__sub_connect_to(s, ip);
        return;
    }
    fs_warn("redis_lookup_failed", "redis=subscription host=%s error=\"%s\" retry_ms=%d", s->host,
            err, s->backoff_ms);
    fs__sub_retry(s);
}

/* Connects to host, looking its name up off the loop first (redis_uv.h). */
static void fs__sub_connect(fs_redis_sub_t *s)
{
    s->lookup = fs_redis_lookup(s->loop, s->host, fs__sub_on_resolved, s);
}

fs_redis_sub_t *fs_redis_sub_new(uv_loop_t *loop, const fs_redis_opts_t *o, const char *channel,
                                 fs_redis_sub_cb cb, void *arg)
{
    fs_redis_sub_t *s = fs_xcalloc(1, sizeof *s);
    int timeout_ms = o->timeout_ms;
    s->loop = loop;
    s->host = fs_xstrndup(o->host, strlen(o->host));
    const char *user = o->user ? o->user : "", *password = o->password ? o->password : "";
    s->user = fs_xstrndup(user, strlen(user));
    s->password = fs_xstrndup(password, strlen(password));
    s->channel = fs_xstrndup(channel, strlen(channel));
    s->port = o->port;
    s->tls = o->tls;
    s->cb = cb;
    s->arg = arg;
    s->backoff_ms = 100;
    s->timeout_ms = timeout_ms;
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    /* Ticks at a tenth of the shorter of the two periods, so that each check is late by little. */
    int shorter = timeout_ms < FS_REDIS_SUB_PROBE_MS ? timeout_ms : FS_REDIS_SUB_PROBE_MS;
    uint64_t tick = (uint64_t)shorter / 10 + 1;
    uv_timer_init(loop, &s->probe);
    s->probe.data = s;
    uv_timer_start(&s->probe, fs__sub_on_probe, tick, tick);
    fs__sub_connect(s);
    return s;
}

static void fs__sub_on_closed(uv_handle_t *h)
{
    fs_redis_sub_t *s = h->data;
    if (--s->open_handles > 0) return;
    free(s->host);
    free(s->user);
    OPENSSL_cleanse(s->password, strlen(s->password));
    free(s->password);
    free(s->channel);
    free(s);
}

uint64_t fs_redis_sub_lost(const fs_redis_sub_t *s)
{
    return s->lost;
}

void fs_redis_sub_close(fs_redis_sub_t *s)
{
    s->closing = 1;
    if (s->lookup) fs_redis_lookup_detach(s->lookup);
    s->lookup = NULL;
    if (s->ac) {
        redisAsyncContext *ac = s->ac;
        s->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    s->open_handles = 2;
    uv_close((uv_handle_t *)&s->timer, fs__sub_on_closed);
    uv_close((uv_handle_t *)&s->probe, fs__sub_on_closed);
}
