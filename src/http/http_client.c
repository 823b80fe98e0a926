/* Asynchronous keep-alive HTTP/1.1 client on libuv, responses parsed by llhttp (see
 * include/flashsale/http_client.h).
 *
 * Structure: a client owns at most one current socket (fs__sock_t). Requests are written to the
 * current socket at once and queued, in order, as "outstanding" until their answer is parsed.
 * When a socket fails, it is detached: its outstanding requests complete with an error, the socket
 * closes on its own, and the next request opens a new one. The client is freed once its timer and
 * every socket it ever opened are closed, so write callbacks (which libuv fires before a socket's
 * close callback) can always hand their request node back to the client's free list.
 *
 * Request nodes are recycled through a free list: the hot path (closed-loop load generation with
 * copy = 0) allocates nothing per request. A node is released when both its write callback has
 * fired and its answer (or failure) has been delivered (`refs` counts those two). */
#include "flashsale/http_client.h"
#include "flashsale/error.h"
#include "../common/buf.h"
#include "../common/log.h"
#include "../common/timeutil.h"

#include <arpa/inet.h>
#include <llhttp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct fs__hreq fs__hreq_t;
typedef struct fs__sock fs__sock_t;

struct fs__hreq {
    fs__hreq_t *next;
    fs_http_client_t *client;
    fs_http_client_cb cb;
    void *arg;
    char *owned;        /* the copy when copy = 1 (freed with the node's release) */
    uint64_t sent_ns;   /* for the timeout */
    uv_write_t w;
    int refs;           /* write callback + answer */
    unsigned head : 1;  /* a HEAD request: its answer has no body */
};

struct fs__sock {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    llhttp_t parser;
    fs_http_client_t *client;
    int detached;       /* no longer the client's current socket; closing */
};

struct fs_http_client {
    uv_loop_t *loop;
    uv_timer_t timer;
    fs_http_client_opts_t o;
    char host_header[80];
    llhttp_settings_t settings;
    fs__sock_t *sock;              /* current socket or NULL */
    fs__hreq_t *head, *tail;       /* outstanding requests of the current socket, in order */
    size_t pending;
    fs__hreq_t *free_list;
    int live_socks;
    int closing, timer_closed;
    int deferred_err;              /* failure to report from the timer (never from send) */
    uint64_t connects;
    /* the answer being parsed */
    fs_buf_t body;
    int retry_after;
    char hname[16];
    size_t hname_len;
    int hname_overflow, in_retry_after;
    fs_buf_t hval;
};

static _Thread_local char fs__read_buf[65536];

static void fs__sock_fail(fs_http_client_t *c, int err);
static void fs__maybe_free(fs_http_client_t *c);

/* ---- request nodes ---- */

static fs__hreq_t *fs__node_get(fs_http_client_t *c)
{
    fs__hreq_t *n = c->free_list;
    if (n) {
        c->free_list = n->next;
    } else {
        n = fs_xmalloc(sizeof *n);
    }
    memset(n, 0, sizeof *n);
    n->client = c;
    return n;
}

static void fs__node_release(fs__hreq_t *n)
{
    if (--n->refs > 0) return;
    fs_http_client_t *c = n->client;
    free(n->owned);
    n->owned = NULL;
    n->next = c->free_list;
    c->free_list = n;
}

/* ---- timer: per-request timeouts and deferred failures ---- */

static void fs__on_timer(uv_timer_t *t);

static void fs__arm_timer(fs_http_client_t *c)
{
    if (c->closing) return;
    if (c->deferred_err) {
        uv_timer_start(&c->timer, fs__on_timer, 0, 0);
        return;
    }
    if (!c->o.timeout_ms || !c->head || uv_is_active((uv_handle_t *)&c->timer)) return;
    uint64_t due = c->head->sent_ns + (uint64_t)c->o.timeout_ms * 1000000u;
    uint64_t now = uv_hrtime();
    uint64_t ms = due > now ? (due - now + 999999u) / 1000000u : 0;
    uv_timer_start(&c->timer, fs__on_timer, ms, 0);
}

static void fs__on_timer(uv_timer_t *t)
{
    fs_http_client_t *c = t->data;
    if (c->deferred_err) {
        int err = c->deferred_err;
        c->deferred_err = 0;
        fs__sock_fail(c, err);
        return;
    }
    if (!c->head) return;
    uint64_t due = c->head->sent_ns + (uint64_t)c->o.timeout_ms * 1000000u;
    if (uv_hrtime() >= due) {
        fs__sock_fail(c, FS_ETIMEDOUT);
    } else {
        fs__arm_timer(c);
    }
}

/* ---- sockets ---- */

static void fs__on_sock_closed(uv_handle_t *h)
{
    fs__sock_t *s = h->data;
    fs_http_client_t *c = s->client;
    free(s);
    c->live_socks--;
    fs__maybe_free(c);
}

/* Detaches the current socket and completes its outstanding requests with err. Callbacks may
 * send new requests (they go to a new socket) or close the client. */
static void fs__sock_fail(fs_http_client_t *c, int err)
{
    fs__sock_t *s = c->sock;
    if (s) {
        c->sock = NULL;
        s->detached = 1;
        uv_close((uv_handle_t *)&s->tcp, fs__on_sock_closed);
    }
    fs__hreq_t *list = c->head;
    c->head = c->tail = NULL;
    uv_timer_stop(&c->timer);
    while (list) {
        fs__hreq_t *n = list;
        list = n->next;
        c->pending--;
        n->cb(n->arg, err, NULL);
        fs__node_release(n);
    }
    fs__arm_timer(c);
}

static void fs__on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = fs__read_buf;
    buf->len = sizeof fs__read_buf;
}

static void fs__on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    fs__sock_t *s = st->data;
    fs_http_client_t *c = s->client;
    if (s->detached) return;
    if (nread < 0) {
        /* An answer delimited by the end of the connection completes here. */
        if (nread == UV_EOF) llhttp_finish(&s->parser);
        if (!s->detached) fs__sock_fail(c, FS_EIO);
        return;
    }
    if (nread == 0) return;
    llhttp_errno_t e = llhttp_execute(&s->parser, buf->base, (size_t)nread);
    if (s->detached) return; /* a callback closed the client or the connection */
    if (e != HPE_OK) fs__sock_fail(c, FS_EPROTO);
}

static void fs__on_connect(uv_connect_t *req, int status)
{
    fs__sock_t *s = req->data;
    if (s->detached) return;
    if (status < 0) {
        fs__sock_fail(s->client, FS_EIO);
        return;
    }
    uv_tcp_nodelay(&s->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&s->tcp, fs__on_alloc, fs__on_read);
    if (rc < 0) fs__sock_fail(s->client, FS_EIO);
}

static fs__sock_t *fs__sock_open(fs_http_client_t *c)
{
    fs__sock_t *s = fs_xcalloc(1, sizeof *s);
    s->client = c;
    uv_tcp_init(c->loop, &s->tcp);
    s->tcp.data = s;
    s->connect_req.data = s;
    llhttp_init(&s->parser, HTTP_RESPONSE, &c->settings);
    s->parser.data = s;
    c->live_socks++;
    c->sock = s;
    c->connects++;
    int rc = uv_tcp_connect(&s->connect_req, &s->tcp, (const struct sockaddr *)&c->o.addr,
                            fs__on_connect);
    if (rc < 0) c->deferred_err = FS_EIO;
    return s;
}

/* ---- llhttp callbacks ---- */

static int fs__on_message_begin(llhttp_t *p)
{
    fs__sock_t *s = p->data;
    fs_http_client_t *c = s->client;
    fs_buf_reset(&c->body);
    c->retry_after = -1;
    c->hname_len = 0;
    c->hname_overflow = 0;
    c->in_retry_after = 0;
    return 0;
}

static int fs__on_header_field(llhttp_t *p, const char *at, size_t n)
{
    fs_http_client_t *c = ((fs__sock_t *)p->data)->client;
    if (c->hname_len + n >= sizeof c->hname) {
        c->hname_overflow = 1;
    } else {
        memcpy(c->hname + c->hname_len, at, n);
        c->hname_len += n;
    }
    return 0;
}

static int fs__on_header_field_complete(llhttp_t *p)
{
    fs_http_client_t *c = ((fs__sock_t *)p->data)->client;
    c->in_retry_after = !c->hname_overflow && c->hname_len == 11 &&
                        strncasecmp(c->hname, "retry-after", 11) == 0;
    c->hname_len = 0;
    c->hname_overflow = 0;
    if (c->in_retry_after) fs_buf_reset(&c->hval);
    return 0;
}

static int fs__on_header_value(llhttp_t *p, const char *at, size_t n)
{
    fs_http_client_t *c = ((fs__sock_t *)p->data)->client;
    if (c->in_retry_after && c->hval.len + n < 64) fs_buf_append(&c->hval, at, n);
    return 0;
}

static int fs__on_header_value_complete(llhttp_t *p)
{
    fs_http_client_t *c = ((fs__sock_t *)p->data)->client;
    if (c->in_retry_after && c->hval.len) {
        char *end;
        long v = strtol(c->hval.data, &end, 10);
        if (end != c->hval.data && *end == 0 && v >= 0 && v < 86400) c->retry_after = (int)v;
    }
    c->in_retry_after = 0;
    return 0;
}

static int fs__on_headers_complete(llhttp_t *p)
{
    fs_http_client_t *c = ((fs__sock_t *)p->data)->client;
    if (!c->head) return -1; /* an answer nobody asked for */
    return c->head->head ? 1 : 0;
}

static int fs__on_body(llhttp_t *p, const char *at, size_t n)
{
    fs_http_client_t *c = ((fs__sock_t *)p->data)->client;
    size_t max = c->o.max_body_bytes ? c->o.max_body_bytes : (size_t)16 << 20;
    if (c->body.len + n > max) return -1;
    fs_buf_append(&c->body, at, n);
    return 0;
}

static int fs__on_message_complete(llhttp_t *p)
{
    fs__sock_t *s = p->data;
    fs_http_client_t *c = s->client;
    fs__hreq_t *n = c->head;
    if (!n) return -1;
    if (p->status_code < 200) return 0; /* 1xx interim answer: the real one follows */
    c->head = n->next;
    if (!c->head) c->tail = NULL;
    c->pending--;
    fs_http_response_t r = {
        .status = p->status_code,
        .body = c->body.data ? c->body.data : "",
        .body_len = c->body.len,
        .retry_after_s = c->retry_after,
        .keep_alive = llhttp_should_keep_alive(p),
    };
    n->cb(n->arg, 0, &r);
    fs__node_release(n);
    if (s->detached) return HPE_PAUSED; /* the callback closed the client: stop parsing */
    if (!r.keep_alive) {
        fs__sock_fail(c, FS_EIO);
        return HPE_PAUSED;
    }
    return 0;
}

/* ---- public API ---- */

int fs_http_client_new(uv_loop_t *loop, const fs_http_client_opts_t *o, fs_http_client_t **out)
{
    fs_http_client_t *c = fs_xcalloc(1, sizeof *c);
    c->loop = loop;
    c->o = *o;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->retry_after = -1;
    fs_buf_init(&c->body);
    fs_buf_init(&c->hval);
    char ip[INET6_ADDRSTRLEN] = "";
    int port = 0;
    if (o->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&o->addr;
        uv_ip6_name(a, ip, sizeof ip);
        port = ntohs(a->sin6_port);
        snprintf(c->host_header, sizeof c->host_header, "[%s]:%d", ip, port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&o->addr;
        uv_ip4_name(a, ip, sizeof ip);
        port = ntohs(a->sin_port);
        snprintf(c->host_header, sizeof c->host_header, "%s:%d", ip, port);
    }
    llhttp_settings_init(&c->settings);
    c->settings.on_message_begin = fs__on_message_begin;
    c->settings.on_header_field = fs__on_header_field;
    c->settings.on_header_field_complete = fs__on_header_field_complete;
    c->settings.on_header_value = fs__on_header_value;
    c->settings.on_header_value_complete = fs__on_header_value_complete;
    c->settings.on_headers_complete = fs__on_headers_complete;
    c->settings.on_body = fs__on_body;
    c->settings.on_message_complete = fs__on_message_complete;
    *out = c;
    return FS_OK;
}

static void fs__on_write(uv_write_t *w, int status)
{
    fs__hreq_t *n = w->data;
    fs_http_client_t *c = n->client;
    fs__sock_t *s = (fs__sock_t *)w->handle->data;
    if (status < 0 && !s->detached && c->sock == s) fs__sock_fail(c, FS_EIO);
    fs__node_release(n);
}

int fs_http_client_send(fs_http_client_t *c, const char *req, size_t len, int copy,
                        fs_http_client_cb cb, void *arg)
{
    if (c->closing) return FS_EINVAL;
    if (!c->sock) fs__sock_open(c);
    fs__hreq_t *n = fs__node_get(c);
    n->cb = cb;
    n->arg = arg;
    n->refs = 2;
    n->head = len >= 5 && memcmp(req, "HEAD ", 5) == 0;
    n->sent_ns = uv_hrtime();
    /* Most requests go out at once: uv_try_write needs no write request, so neither the write
     * callback nor libuv's re-arming of the socket's epoll entry after it (one epoll_ctl per
     * request). It refuses (UV_EAGAIN) while connecting or while earlier writes are queued, which
     * keeps the order; what it leaves is written by uv_write. */
    size_t done = 0;
    if (!c->deferred_err) {
        uv_buf_t all = uv_buf_init((char *)req, (unsigned)len);
        int w = uv_try_write((uv_stream_t *)&c->sock->tcp, &all, 1);
        if (w > 0) done = (size_t)w;
    }
    if (done == len) {
        n->refs--; /* no write callback to wait for */
    } else if (copy) {
        n->owned = fs_xmalloc(len - done);
        memcpy(n->owned, req + done, len - done);
        req = n->owned;
    } else {
        req += done;
    }
    len -= done;
    if (c->tail) {
        c->tail->next = n;
    } else {
        c->head = n;
    }
    c->tail = n;
    c->pending++;
    n->w.data = n;
    uv_buf_t b = uv_buf_init((char *)req, (unsigned)len);
    if (!len) {
        /* written above */
    } else if (c->deferred_err) {
        /* connect failed synchronously: the timer reports it, with this request */
        n->refs--;
    } else if (uv_write(&n->w, (uv_stream_t *)&c->sock->tcp, &b, 1, fs__on_write) < 0) {
        n->refs--;
        c->deferred_err = FS_EIO;
    }
    fs__arm_timer(c);
    return FS_OK;
}

int fs_http_client_request(fs_http_client_t *c, const char *method, const char *path,
                           const char *extra_headers, const char *body, size_t body_len,
                           fs_http_client_cb cb, void *arg)
{
    fs_buf_t b;
    fs_buf_init(&b);
    fs_buf_printf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, c->host_header);
    if (extra_headers) fs_buf_puts(&b, extra_headers);
    if (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0)
        fs_buf_printf(&b, "Content-Length: %zu\r\n", body_len);
    fs_buf_puts(&b, "\r\n");
    if (body && body_len) fs_buf_append(&b, body, body_len);
    /* hand the buffer over as the node's copy */
    int rc = fs_http_client_send(c, b.data, b.len, 1, cb, arg);
    fs_buf_free(&b);
    return rc;
}

int fs_http_client_connect(fs_http_client_t *c)
{
    if (c->closing) return FS_EINVAL;
    if (!c->sock) fs__sock_open(c); /* a synchronous failure waits for the next request */
    return FS_OK;
}

size_t fs_http_client_pending(const fs_http_client_t *c)
{
    return c->pending;
}

uint64_t fs_http_client_connects(const fs_http_client_t *c)
{
    return c->connects;
}

static void fs__maybe_free(fs_http_client_t *c)
{
    if (!c->closing || !c->timer_closed || c->live_socks) return;
    while (c->free_list) {
        fs__hreq_t *n = c->free_list;
        c->free_list = n->next;
        free(n->owned);
        free(n);
    }
    fs_buf_free(&c->body);
    fs_buf_free(&c->hval);
    free(c);
}

static void fs__on_timer_closed(uv_handle_t *h)
{
    fs_http_client_t *c = h->data;
    c->timer_closed = 1;
    fs__maybe_free(c);
}

void fs_http_client_close(fs_http_client_t *c)
{
    if (c->closing) return;
    /* closing first: callbacks fired by the failure below cannot send new requests */
    c->closing = 1;
    c->deferred_err = 0;
    fs__sock_fail(c, FS_EIO);
    uv_close((uv_handle_t *)&c->timer, fs__on_timer_closed);
}

/* ---- addresses and URLs ---- */

int fs_http_resolve(const char *host, int port, struct sockaddr_storage *addr)
{
    memset(addr, 0, sizeof *addr);
    if (port <= 0 || port > 65535) return FS_EINVAL;
    struct sockaddr_in *a4 = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)addr;
    if (uv_ip4_addr(host, port, a4) == 0) return FS_OK;
    if (uv_ip6_addr(host, port, a6) == 0) return FS_OK;
    if (strcasecmp(host, "localhost") == 0) return uv_ip4_addr("127.0.0.1", port, a4) ? FS_EINVAL : FS_OK;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) return FS_EINVAL;
    int rc = FS_EINVAL;
    if (res->ai_family == AF_INET || res->ai_family == AF_INET6) {
        memcpy(addr, res->ai_addr, res->ai_addrlen);
        if (res->ai_family == AF_INET)
            a4->sin_port = htons((uint16_t)port);
        else
            a6->sin6_port = htons((uint16_t)port);
        rc = FS_OK;
    }
    freeaddrinfo(res);
    return rc;
}

int fs_http_addr_is_loopback(const struct sockaddr_storage *addr)
{
    if (addr->ss_family == AF_INET) {
        uint32_t ip = ntohl(((const struct sockaddr_in *)addr)->sin_addr.s_addr);
        return (ip >> 24) == 127;
    }
    if (addr->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)addr)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a)) return 1;
        if (IN6_IS_ADDR_V4MAPPED(a)) return a->s6_addr[12] == 127;
    }
    return 0;
}

int fs_http_url_parse(const char *url, char *host, int *port, char *path)
{
    const char *p = url;
    if (strncasecmp(p, "http://", 7) != 0) return FS_EINVAL;
    p += 7;
    size_t hl;
    const char *after;
    if (*p == '[') {
        const char *e = strchr(p, ']');
        if (!e) return FS_EINVAL;
        hl = (size_t)(e - p - 1);
        if (hl == 0 || hl >= 256) return FS_EINVAL;
        memcpy(host, p + 1, hl);
        after = e + 1;
    } else {
        hl = strcspn(p, ":/?#");
        if (hl == 0 || hl >= 256) return FS_EINVAL;
        memcpy(host, p, hl);
        after = p + hl;
    }
    host[hl] = 0;
    *port = 80;
    if (*after == ':') {
        char *end;
        long v = strtol(after + 1, &end, 10);
        if (end == after + 1 || v <= 0 || v > 65535) return FS_EINVAL;
        *port = (int)v;
        after = end;
    }
    if (*after == 0 || *after == '#') {
        strcpy(path, "/");
        return FS_OK;
    }
    if (*after != '/' && *after != '?') return FS_EINVAL;
    size_t pl = strcspn(after, "# \t\r\n");
    if (after[pl] && after[pl] != '#') return FS_EINVAL;
    if (pl + 2 >= 2048) return FS_EINVAL;
    if (*after == '?') {
        path[0] = '/';
        memcpy(path + 1, after, pl);
        path[pl + 1] = 0;
    } else {
        memcpy(path, after, pl);
        path[pl] = 0;
    }
    return FS_OK;
}
