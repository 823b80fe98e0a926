/* HTTP(S) delivery client on libuv (see deliver.h).
 *
 * Life of a connection: RESOLVING (uv_getaddrinfo) → CONNECTING → HANDSHAKE (TLS only) → ACTIVE
 * (request written, answer being parsed) → IDLE (kept alive, on the idle list, still read so that
 * a close by the peer is noticed) → ACTIVE again ... → CLOSING. A connection carries at most one
 * request at a time. Its timer is the request's deadline while ACTIVE and the keep-alive limit
 * while IDLE.
 *
 * Ownership: the client allocates each connection and frees it in the close callback of the last
 * of its handles (`refs` counts the tcp handle, the timer and a pending getaddrinfo). A request
 * (fs__dreq_t) belongs to the connection that carries it and is freed right after its callback.
 * Every write owns a copy of its bytes, freed in the write callback. */
#define _GNU_SOURCE /* strptime, timegm */
#include "deliver.h"
#include "../common/tls.h"
#include "../common/buf.h"
#include "../common/log.h"
#include "../common/timeutil.h"
#include "flashsale/error.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <llhttp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define FS__MAX_BODY (16u << 20) /* answers larger than this are malformed for us */

typedef enum { FS__RESOLVING, FS__CONNECTING, FS__HANDSHAKE, FS__ACTIVE, FS__IDLE, FS__CLOSING } fs__cstate_t;

typedef struct fs__dreq {
    fs_deliver_cb cb;
    void *arg;
    char *data; /* the serialized request */
    size_t len;
    uint64_t start_ns;
    int stale_retried;
} fs__dreq_t;

typedef struct fs__conn fs__conn_t;
struct fs__conn {
    fs_deliver_t *d;
    fs__conn_t *prev, *next;           /* every live connection */
    fs__conn_t *idle_prev, *idle_next; /* idle ones, most recently used first */
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    uv_connect_t creq;
    int refs;
    fs__cstate_t state;
    int reading;
    fs_tls_t *tls;
    fs__dreq_t *req;
    uint64_t used;         /* answers received on this connection */
    llhttp_t parser;
    /* the answer being parsed */
    int got_bytes, complete;
    int64_t retry_after_ms;
    fs_buf_t body;
    size_t body_total;
    char hname[16];
    size_t hname_len;
    int hname_long;
    fs_buf_t hval;
};

struct fs_deliver {
    uv_loop_t *loop;
    fs_relay_target_t target;
    char port_str[8];
    int timeout_ms, idle_ms;
    size_t max_conns;
    char *head;            /* request line and fixed headers, up to Content-Length */
    fs_tls_ctx_t *tls_ctx;
    llhttp_settings_t settings;
    fs__conn_t *conns, *idle;
    size_t nconns, nactive;
    int closing;
    fs_deliver_stats_t stats;
};

typedef struct {
    uv_write_t w;
    size_t len;
    char data[];
} fs__write_t;

static _Thread_local char fs__rbuf[65536];

static void fs__conn_close(fs__conn_t *c);
static void fs__fail(fs__conn_t *c, int err, int tls_failure, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fs__start_request(fs__conn_t *c);
static fs__conn_t *fs__conn_new(fs_deliver_t *d);

/* ---- target URLs ---- */

static int fs__loopback_name(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (strcasecmp(host, "localhost") == 0) return 1;
    if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

static int fs__addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return 0;
}

int fs_relay_target_parse(const char *url, fs_relay_target_t *t, char *err, size_t errcap)
{
    memset(t, 0, sizeof *t);
    const char *p;
    if (strncasecmp(url, "https://", 8) == 0) {
        t->tls = 1;
        t->port = 443;
        p = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        t->port = 80;
        p = url + 7;
    } else {
        snprintf(err, errcap, "the URL must start with https:// (or http:// for a loopback host)");
        return FS_EINVAL;
    }
    size_t auth_len = strcspn(p, "/?#");
    if (memchr(p, '@', auth_len)) {
        snprintf(err, errcap, "credentials in the URL are not supported");
        return FS_EINVAL;
    }
    if (strchr(p, '#')) {
        snprintf(err, errcap, "the URL must not have a fragment");
        return FS_EINVAL;
    }
    const char *port_at = NULL;
    size_t hl;
    if (*p == '[') {
        const char *close = memchr(p, ']', auth_len);
        if (!close) {
            snprintf(err, errcap, "unterminated [IPv6] host");
            return FS_EINVAL;
        }
        hl = (size_t)(close - p - 1);
        if (hl == 0 || hl >= sizeof t->host) goto bad_host;
        memcpy(t->host, p + 1, hl);
        if (close + 1 < p + auth_len) {
            if (close[1] != ':') goto bad_host;
            port_at = close + 2;
        }
    } else {
        const char *colon = memchr(p, ':', auth_len);
        hl = colon ? (size_t)(colon - p) : auth_len;
        if (hl == 0 || hl >= sizeof t->host) goto bad_host;
        memcpy(t->host, p, hl);
        if (colon) port_at = colon + 1;
    }
    for (const char *h = t->host; *h; h++)
        if (!(isalnum((unsigned char)*h) || *h == '.' || *h == '-' || *h == ':' || *h == '_'))
            goto bad_host;
    if (port_at) {
        long v = 0;
        const char *e = p + auth_len;
        if (port_at == e) goto bad_port;
        for (const char *q = port_at; q < e; q++) {
            if (!isdigit((unsigned char)*q)) goto bad_port;
            v = v * 10 + (*q - '0');
            if (v > 65535) goto bad_port;
        }
        if (v < 1) goto bad_port;
        t->port = (int)v;
    }
    struct in_addr a4;
    struct in6_addr a6;
    t->host_is_ip = inet_pton(AF_INET, t->host, &a4) == 1 || inet_pton(AF_INET6, t->host, &a6) == 1;
    if (strchr(t->host, ':') && !t->host_is_ip) goto bad_host;
    const char *path = p + auth_len;
    if (!*path) path = "/";
    if (*path == '?') {
        snprintf(t->path, sizeof t->path, "/%s", path);
    } else if (strlen(path) >= sizeof t->path) {
        snprintf(err, errcap, "the URL path is too long");
        return FS_EINVAL;
    } else {
        memcpy(t->path, path, strlen(path) + 1);
    }
    for (const char *q = t->path; *q; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f) {
            snprintf(err, errcap, "the URL path must not contain spaces or control characters");
            return FS_EINVAL;
        }
    int default_port = t->port == (t->tls ? 443 : 80);
    if (strchr(t->host, ':'))
        snprintf(t->host_header, sizeof t->host_header, default_port ? "[%s]" : "[%s]:%d", t->host, t->port);
    else
        snprintf(t->host_header, sizeof t->host_header, default_port ? "%s" : "%s:%d", t->host, t->port);
    if (!t->tls && !fs__loopback_name(t->host)) {
        snprintf(err, errcap, "plain http is allowed only to a loopback host (127.0.0.1, ::1, "
                              "localhost); use https");
        return FS_EINVAL;
    }
    return FS_OK;
bad_host:
    snprintf(err, errcap, "the URL has no valid host");
    return FS_EINVAL;
bad_port:
    snprintf(err, errcap, "the URL has an invalid port");
    return FS_EINVAL;
}

/* ---- Retry-After ---- */

/* Seconds ("120") or an HTTP date ("Sun, 06 Nov 1994 08:49:37 GMT"); -1 when neither. */
static int64_t fs__retry_after_ms(const char *v, size_t n)
{
    while (n && (*v == ' ' || *v == '\t')) v++, n--;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    if (n == 0 || n > 64) return -1;
    char tmp[65];
    memcpy(tmp, v, n);
    tmp[n] = 0;
    int digits = 1;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)tmp[i])) digits = 0;
    if (digits) {
        if (n > 9) return 86400000LL * 365;
        return strtoll(tmp, NULL, 10) * 1000;
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(tmp, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end) return -1;
    int64_t at_ms = (int64_t)timegm(&tm) * 1000;
    int64_t d = at_ms - fs_wall_ms();
    return d > 0 ? d : 0;
}

/* ---- llhttp callbacks ---- */

static int fs__on_message_begin(llhttp_t *p)
{
    fs__conn_t *c = p->data;
    c->retry_after_ms = -1;
    fs_buf_reset(&c->body);
    c->body_total = 0;
    c->hname_len = 0;
    c->hname_long = 0;
    fs_buf_reset(&c->hval);
    return 0;
}

static int fs__on_header_field(llhttp_t *p, const char *at, size_t n)
{
    fs__conn_t *c = p->data;
    if (c->hname_len + n >= sizeof c->hname) {
        c->hname_long = 1;
        return 0;
    }
    memcpy(c->hname + c->hname_len, at, n);
    c->hname_len += n;
    return 0;
}

static int fs__is_retry_after(const fs__conn_t *c)
{
    return !c->hname_long && c->hname_len == 11 && strncasecmp(c->hname, "retry-after", 11) == 0;
}

static int fs__on_header_value(llhttp_t *p, const char *at, size_t n)
{
    fs__conn_t *c = p->data;
    if (fs__is_retry_after(c) && c->hval.len + n <= 128) fs_buf_append(&c->hval, at, n);
    return 0;
}

static int fs__on_header_value_complete(llhttp_t *p)
{
    fs__conn_t *c = p->data;
    if (fs__is_retry_after(c)) c->retry_after_ms = fs__retry_after_ms(c->hval.data ? c->hval.data : "", c->hval.len);
    c->hname_len = 0;
    c->hname_long = 0;
    fs_buf_reset(&c->hval);
    return 0;
}

static int fs__on_body(llhttp_t *p, const char *at, size_t n)
{
    fs__conn_t *c = p->data;
    c->body_total += n;
    if (c->body_total > FS__MAX_BODY) return HPE_USER;
    if (c->body.len < FS_DELIVER_BODY_KEEP) {
        size_t take = FS_DELIVER_BODY_KEEP - c->body.len;
        fs_buf_append(&c->body, at, n < take ? n : take);
    }
    return 0;
}

static int fs__on_message_complete(llhttp_t *p)
{
    fs__conn_t *c = p->data;
    /* An interim answer (100 Continue, 103 Early Hints): the real one follows. */
    int st = llhttp_get_status_code(p);
    if (st >= 100 && st < 200 && st != 101) return 0;
    c->complete = 1;
    return HPE_PAUSED;
}

/* ---- connections ---- */

static void fs__idle_unlink(fs__conn_t *c)
{
    fs_deliver_t *d = c->d;
    if (c->idle_prev) c->idle_prev->idle_next = c->idle_next;
    else if (d->idle == c) d->idle = c->idle_next;
    if (c->idle_next) c->idle_next->idle_prev = c->idle_prev;
    c->idle_prev = c->idle_next = NULL;
}

static void fs__maybe_free_client(fs_deliver_t *d)
{
    if (!d->closing || d->conns) return;
    fs_tls_ctx_free(d->tls_ctx);
    free(d->head);
    free(d);
}

static void fs__conn_unref(fs__conn_t *c)
{
    if (--c->refs > 0) return;
    fs_deliver_t *d = c->d;
    if (c->prev) c->prev->next = c->next;
    else d->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    fs_tls_free(c->tls);
    fs_buf_free(&c->body);
    fs_buf_free(&c->hval);
    free(c);
    fs__maybe_free_client(d);
}

static void fs__on_handle_closed(uv_handle_t *h)
{
    fs__conn_unref(h->data);
}

/* Closes the connection (its request, if any, must have been completed or detached before). */
static void fs__conn_close(fs__conn_t *c)
{
    if (c->state == FS__CLOSING) return;
    if (c->state == FS__IDLE) fs__idle_unlink(c);
    if (c->state == FS__RESOLVING) uv_cancel((uv_req_t *)&c->gai);
    c->state = FS__CLOSING;
    c->d->nconns--;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, fs__on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, fs__on_handle_closed);
}

/* Hands the request its outcome and forgets it. */
static void fs__complete(fs__conn_t *c, fs_deliver_result_t *r)
{
    fs__dreq_t *q = c->req;
    fs_deliver_t *d = c->d;
    c->req = NULL;
    d->nactive--;
    r->duration_ns = fs_mono_ns() - q->start_ns;
    if (!r->error) r->error = "";
    q->cb(q->arg, r);
    free(q->data);
    free(q);
}

static void fs__fail(fs__conn_t *c, int err, int tls_failure, const char *fmt, ...)
{
    fs__dreq_t *q = c->req;
    fs_deliver_t *d = c->d;
    fs__cstate_t was = c->state;
    fs__conn_close(c);
    if (!q) return;
    /* The peer closed a kept-alive connection before we used it: not the request's fault. */
    if (err == FS_EIO && c->used > 0 && !c->got_bytes && was == FS__ACTIVE && !q->stale_retried &&
        !d->closing) {
        c->req = NULL;
        q->stale_retried = 1;
        d->stats.stale_retries++;
        /* A new connection, not another idle one (it may be just as stale). */
        fs__conn_t *n = fs__conn_new(d);
        n->req = q;
        fs__start_request(n);
        return;
    }
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fs_deliver_result_t r = {.err = err, .tls_failure = tls_failure, .retry_after_ms = -1,
                             .body = "", .error = msg, .reused = c->used > 0};
    if (tls_failure) d->stats.tls_failures++;
    fs__complete(c, &r);
}

static void fs__on_write(uv_write_t *w, int status)
{
    fs__write_t *wr = (fs__write_t *)w;
    fs__conn_t *c = wr->w.data;
    free(wr);
    if (status < 0 && c->state != FS__CLOSING)
        fs__fail(c, FS_EIO, 0, "write failed: %s", uv_strerror(status));
}

static int fs__send_raw(fs__conn_t *c, const char *p, size_t n)
{
    fs__write_t *wr = fs_xmalloc(sizeof *wr + n);
    memcpy(wr->data, p, n);
    wr->len = n;
    wr->w.data = c;
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)n);
    int rc = uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, fs__on_write);
    if (rc < 0) {
        free(wr);
        return rc;
    }
    return 0;
}

/* Sends whatever ciphertext the TLS engine has produced. */
static int fs__flush_tls(fs__conn_t *c)
{
    fs_buf_t out;
    fs_buf_init(&out);
    int rc = 0;
    if (fs_tls_take_output(c->tls, &out) > 0) rc = fs__send_raw(c, out.data, out.len);
    fs_buf_free(&out);
    return rc;
}

/* Writes the request and starts waiting for its answer. */
static void fs__send_request(fs__conn_t *c)
{
    fs__dreq_t *q = c->req;
    c->state = FS__ACTIVE;
    c->got_bytes = 0;
    c->complete = 0;
    llhttp_init(&c->parser, HTTP_RESPONSE, &c->d->settings);
    c->parser.data = c;
    int rc;
    if (c->tls) {
        char err[300];
        if (fs_tls_write(c->tls, q->data, q->len, err, sizeof err)) {
            fs__fail(c, FS_EPROTO, 1, "tls: %s", err);
            return;
        }
        rc = fs__flush_tls(c);
    } else {
        rc = fs__send_raw(c, q->data, q->len);
    }
    if (rc < 0) fs__fail(c, FS_EIO, 0, "write failed: %s", uv_strerror(rc));
}

static void fs__on_idle_timer(uv_timer_t *t)
{
    fs__conn_t *c = t->data;
    if (c->state == FS__IDLE) fs__conn_close(c);
}

static void fs__on_deadline(uv_timer_t *t)
{
    fs__conn_t *c = t->data;
    if (!c->req) return;
    static const char *const stage[] = {"resolving", "connecting", "in the TLS handshake",
                                        "waiting for the answer", "", ""};
    fs__fail(c, FS_ETIMEDOUT, 0, "timeout after %d ms %s", c->d->timeout_ms, stage[c->state]);
}

/* The answer is complete: report it, then keep the connection or close it. */
static void fs__answer(fs__conn_t *c, size_t unparsed)
{
    fs_deliver_t *d = c->d;
    char body[FS_DELIVER_BODY_KEEP + 1];
    size_t bl = c->body.len;
    if (bl) memcpy(body, c->body.data, bl);
    body[bl] = 0;
    fs_deliver_result_t r = {.err = 0, .status = llhttp_get_status_code(&c->parser),
                             .retry_after_ms = c->retry_after_ms, .body = body, .body_len = bl,
                             .reused = c->used > 0};
    c->used++;
    int keep = llhttp_should_keep_alive(&c->parser) && unparsed == 0 && !d->closing;
    uv_timer_stop(&c->timer);
    if (keep) {
        c->state = FS__IDLE;
        c->idle_prev = NULL;
        c->idle_next = d->idle;
        if (d->idle) d->idle->idle_prev = c;
        d->idle = c;
        uv_timer_start(&c->timer, fs__on_idle_timer, (uint64_t)d->idle_ms, 0);
    } else {
        fs__conn_close(c);
    }
    fs__complete(c, &r); /* may start a new request on this very connection */
}

/* Parses answer bytes. Returns 1 when the connection was handed on (answered or failed). */
static int fs__parse(fs__conn_t *c, const char *p, size_t n)
{
    if (n == 0) return 0;
    if (c->state == FS__IDLE) {
        /* Bytes nobody asked for: the connection cannot be trusted any more. */
        fs__conn_close(c);
        return 1;
    }
    c->got_bytes = 1;
    llhttp_errno_t e = llhttp_execute(&c->parser, p, n);
    if (e == HPE_PAUSED && c->complete) {
        size_t used = (size_t)(llhttp_get_error_pos(&c->parser) - p);
        fs__answer(c, n - used);
        return 1;
    }
    if (e != HPE_OK) {
        fs__fail(c, FS_EPROTO, 0, "malformed answer: %s",
                 c->body_total > FS__MAX_BODY ? "body too large" : llhttp_errno_name(e));
        return 1;
    }
    return 0;
}

static void fs__on_eof(fs__conn_t *c, const char *why)
{
    if (c->state == FS__ACTIVE && c->got_bytes && llhttp_message_needs_eof(&c->parser)) {
        /* An answer delimited by the end of the connection. */
        if (llhttp_finish(&c->parser) == HPE_OK && c->complete) {
            fs__answer(c, 0);
            return;
        }
    }
    if (c->state == FS__IDLE || !c->req) {
        fs__conn_close(c);
        return;
    }
    if (c->state == FS__HANDSHAKE)
        fs__fail(c, FS_EIO, 1, "tls: handshake failed: %s", why);
    else if (c->got_bytes)
        fs__fail(c, FS_EIO, 0, "connection %s mid-answer", why);
    else
        fs__fail(c, FS_EIO, 0, "connection %s before the answer", why);
}

static void fs__alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    b->base = fs__rbuf;
    b->len = sizeof fs__rbuf;
}

static void fs__on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    fs__conn_t *c = s->data;
    if (c->state == FS__CLOSING) return;
    if (nread < 0) {
        fs__on_eof(c, nread == UV_EOF ? "closed" : "reset");
        return;
    }
    if (nread == 0) return;
    if (!c->tls) {
        fs__parse(c, b->base, (size_t)nread);
        return;
    }
    char err[300];
    fs_tls_feed(c->tls, b->base, (size_t)nread);
    if (c->state == FS__HANDSHAKE) {
        int rc = fs_tls_handshake(c->tls, err, sizeof err);
        /* Send what the engine wrote (more handshake, or an alert) before anything else. */
        fs__flush_tls(c);
        if (rc == FS_EAGAIN) return;
        if (rc != FS_OK) {
            fs_warn("relay_tls_failed", "host=%s port=%d reason=\"%s\"", c->d->target.host,
                    c->d->target.port, err);
            fs__fail(c, FS_EPROTO, 1, "tls: %s", err);
            return;
        }
        c->d->stats.tls_handshakes++;
        fs__send_request(c);
        /* Application data may already be buffered behind the handshake: fall through. */
        if (c->state != FS__ACTIVE) return;
    }
    /* Decrypt and parse. The buffer is a second one: fs__rbuf still holds ciphertext. */
    static _Thread_local char plain[16384];
    for (;;) {
        int r = fs_tls_read(c->tls, plain, sizeof plain, err, sizeof err);
        fs__flush_tls(c);
        if (r == FS_EAGAIN) return;
        if (r == 0) {
            fs__on_eof(c, "closed");
            return;
        }
        if (r < 0) {
            fs__fail(c, FS_EPROTO, 0, "tls: %s", err);
            return;
        }
        if (fs__parse(c, plain, (size_t)r)) return;
        if (c->state == FS__CLOSING) return;
    }
}

static void fs__on_connect(uv_connect_t *creq, int status)
{
    fs__conn_t *c = creq->data;
    if (c->state == FS__CLOSING) return;
    if (status < 0) {
        fs__fail(c, FS_EIO, 0, "connect to %s:%d failed: %s", c->d->target.host, c->d->target.port,
                 uv_strerror(status));
        return;
    }
    c->d->stats.connects++;
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, fs__alloc, fs__on_read) < 0) {
        fs__fail(c, FS_EIO, 0, "cannot read from the connection");
        return;
    }
    c->reading = 1;
    if (c->d->target.tls) {
        char err[300];
        c->state = FS__HANDSHAKE;
        c->tls = fs_tls_new(c->d->tls_ctx, c->d->target.host, c->d->target.host_is_ip);
        int rc = fs_tls_handshake(c->tls, err, sizeof err); /* writes the ClientHello */
        if (rc != FS_EAGAIN) {
            fs__fail(c, FS_EPROTO, 1, "tls: %s", rc == FS_OK ? "unexpected handshake state" : err);
            return;
        }
        if (fs__flush_tls(c) < 0) fs__fail(c, FS_EIO, 0, "write failed");
        return;
    }
    fs__send_request(c);
}

static void fs__on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    fs__conn_t *c = g->data;
    fs_deliver_t *d = c->d;
    if (c->state != FS__RESOLVING) {
        /* Cancelled by a close. */
        if (res) uv_freeaddrinfo(res);
        fs__conn_unref(c);
        return;
    }
    fs__conn_unref(c); /* the getaddrinfo's reference; the handles still hold two */
    if (status < 0 || !res) {
        fs__fail(c, FS_EIO, 0, "cannot resolve %s: %s", d->target.host, uv_strerror(status));
        if (res) uv_freeaddrinfo(res);
        return;
    }
    if (!d->target.tls && !fs__addr_is_loopback(res->ai_addr)) {
        uv_freeaddrinfo(res);
        fs__fail(c, FS_EPROTO, 0, "refusing plain http: %s does not resolve to a loopback address",
                 d->target.host);
        return;
    }
    c->state = FS__CONNECTING;
    c->creq.data = c;
    int rc = uv_tcp_connect(&c->creq, &c->tcp, res->ai_addr, fs__on_connect);
    uv_freeaddrinfo(res);
    if (rc < 0) fs__fail(c, FS_EIO, 0, "connect to %s:%d failed: %s", d->target.host, d->target.port, uv_strerror(rc));
}

static fs__conn_t *fs__conn_new(fs_deliver_t *d)
{
    fs__conn_t *c = fs_xcalloc(1, sizeof *c);
    c->d = d;
    uv_tcp_init(d->loop, &c->tcp);
    uv_timer_init(d->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->refs = 2;
    c->state = FS__RESOLVING;
    c->next = d->conns;
    if (d->conns) d->conns->prev = c;
    d->conns = c;
    d->nconns++;
    return c;
}

/* Starts c's request: on a fresh connection resolve first; on an idle one send at once. */
static void fs__start_request(fs__conn_t *c)
{
    fs_deliver_t *d = c->d;
    uint64_t elapsed_ms = (fs_mono_ns() - c->req->start_ns) / 1000000u;
    uint64_t left = (uint64_t)d->timeout_ms > elapsed_ms ? (uint64_t)d->timeout_ms - elapsed_ms : 1;
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, fs__on_deadline, left, 0);
    if (c->state == FS__IDLE) {
        fs__idle_unlink(c);
        d->stats.reuses++;
        fs__send_request(c);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    c->gai.data = c;
    c->refs++;
    int rc = uv_getaddrinfo(d->loop, &c->gai, fs__on_resolved, d->target.host, d->port_str, &hints);
    if (rc < 0) {
        c->refs--;
        /* Reported from the deadline timer, never from inside fs_deliver_post. */
        uv_timer_start(&c->timer, fs__on_deadline, 0, 0);
    }
}

int fs_deliver_post(fs_deliver_t *d, const char *extra_headers, const char *body, size_t len,
                    fs_deliver_cb cb, void *arg)
{
    if (d->closing || d->nactive >= d->max_conns) return FS_ENOMEM;
    fs__dreq_t *q = fs_xcalloc(1, sizeof *q);
    q->cb = cb;
    q->arg = arg;
    q->start_ns = fs_mono_ns();
    fs_buf_t b;
    fs_buf_init(&b);
    fs_buf_printf(&b, "%s%zu\r\n%s\r\n", d->head, len, extra_headers ? extra_headers : "");
    fs_buf_append(&b, body, len);
    q->data = b.data;
    q->len = b.len;
    d->nactive++;
    fs__conn_t *c = d->idle;
    if (!c) c = fs__conn_new(d);
    c->req = q;
    fs__start_request(c);
    return FS_OK;
}

int fs_deliver_new(uv_loop_t *loop, const fs_deliver_opts_t *o, fs_deliver_t **out, char *err,
                   size_t errcap)
{
    fs_deliver_t *d = fs_xcalloc(1, sizeof *d);
    d->loop = loop;
    d->target = *o->target;
    snprintf(d->port_str, sizeof d->port_str, "%d", d->target.port);
    d->timeout_ms = o->timeout_ms;
    d->idle_ms = o->idle_ms > 0 ? o->idle_ms : 30000;
    d->max_conns = o->max_conns > 0 ? (size_t)o->max_conns : 1;
    if (d->target.tls && fs_tls_ctx_new(&d->tls_ctx, o->ca_file, err, errcap)) {
        free(d);
        return FS_EINVAL;
    }
    fs_buf_t h;
    fs_buf_init(&h);
    fs_buf_printf(&h, "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\n"
                      "Content-Type: application/json\r\nContent-Length: ",
                  d->target.path, d->target.host_header, o->user_agent ? o->user_agent : "flashsale-relay");
    d->head = h.data;
    llhttp_settings_init(&d->settings);
    d->settings.on_message_begin = fs__on_message_begin;
    d->settings.on_header_field = fs__on_header_field;
    d->settings.on_header_value = fs__on_header_value;
    d->settings.on_header_value_complete = fs__on_header_value_complete;
    d->settings.on_body = fs__on_body;
    d->settings.on_message_complete = fs__on_message_complete;
    *out = d;
    return FS_OK;
}

size_t fs_deliver_in_flight(const fs_deliver_t *d)
{
    return d->nactive;
}

size_t fs_deliver_open_connections(const fs_deliver_t *d)
{
    return d->nconns;
}

fs_deliver_stats_t fs_deliver_stats(const fs_deliver_t *d)
{
    return d->stats;
}

void fs_deliver_close(fs_deliver_t *d)
{
    if (d->closing) return;
    d->closing = 1;
    for (fs__conn_t *c = d->conns; c; c = c->next) {
        if (c->state == FS__CLOSING) continue;
        if (c->req) fs__fail(c, FS_EIO, 0, "shutting down");
        else fs__conn_close(c);
    }
    /* With no connection at all, nothing will call back: free now. */
    fs__maybe_free_client(d);
}
