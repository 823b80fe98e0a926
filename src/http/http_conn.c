/* HTTP/1.1 listeners and connections on libuv, parsing with llhttp (see http.h).
 *
 * Life of a connection: accepted → READY (reading; idle timer armed) → a complete request pauses
 * the parser and the connection becomes BUSY (not read, timer stopped) → fs_http_respond writes the
 * answer and returns it to READY, resuming the parser on any pipelined bytes already buffered.
 * The one timer of a connection holds whichever deadline applies (fs__arm_timer): idle, request
 * head, request body (both counted from the request's first byte) or a client not reading.
 *
 * Ownership: the server allocates each fs_http_conn_t on accept and frees it once its two handles
 * (tcp, timer) are closed and no request is in flight (`refs` counts those three). */
#include "http.h"
#include "../common/buf.h"
#include "../common/log.h"
#include "flashsale/error.h"

#include <errno.h>
#include <stdatomic.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

typedef enum { FS__READY, FS__BUSY } fs__state_t;
typedef enum { FS__T_IDLE, FS__T_HEAD, FS__T_BODY, FS__T_DRAIN } fs__timer_kind_t;

/* Offsets into the head buffer, which never exceeds 64 KiB (max_header_bytes is capped). */
typedef struct {
    uint16_t name_off, name_len, val_off, val_len;
} fs__hdr_t;

struct fs_http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    llhttp_t parser;
    fs_http_server_t *server;
    fs_http_conn_t *prev, *next;
    int refs;
    fs__state_t state;
    unsigned closing : 1, processing : 1, keep_alive : 1, close_after_write : 1,
        in_message : 1, reading : 1, header_value_open : 1, peer_eof : 1, write_blocked : 1,
        peer_trusted : 1, client_done : 1, counted : 1, headers_done : 1, timer_kind : 2;
    int error_status;     /* set by a callback that rejects the request (413, 431) */
    uint64_t req_first;   /* loop time (ms) of the current request's first byte */
    int writes_pending;
    fs_buf_t in;          /* received bytes not parsed yet */
    fs_buf_t out;         /* answers gathered while a pipelined burst is parsed: one write */
    fs_buf_t head;        /* url, then header names and values of the current request */
    fs_buf_t body;
    uint32_t url_len;
    fs__hdr_t hdrs[FS_HTTP_MAX_HEADERS];
    int nhdrs;
    fs_http_req_t req;
    char peer[FS_HTTP_ADDR_MAX];   /* the socket peer as text, read once at accept */
    char client[FS_HTTP_ADDR_MAX]; /* X-Forwarded-For's client when peer_trusted ("" if none) */
    uint8_t peer_addr[16];         /* the peer as counted in the server's fs_http_limits_t */
};

struct fs_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    fs_http_server_opts_t o;
    llhttp_settings_t settings;
    fs_http_conn_t *conns;
    size_t nconns; /* open (not closing) connections */
    size_t nalive; /* allocated connections, closing ones included */
    int draining, closing, listener_closed;
    void (*drained)(void *);
    void *drained_arg;
    fs_http_cidr_t *trusted; /* o.trusted_proxies, parsed */
    size_t ntrusted;
    char read_buf[65536];
};

typedef struct {
    uv_write_t w;
    fs_http_conn_t *conn;
    size_t len;
    char data[];
} fs__write_t;

static void fs__conn_close(fs_http_conn_t *c);
static void fs__conn_process(fs_http_conn_t *c);
static void fs__maybe_drained(fs_http_server_t *s);

/* ---- llhttp callbacks: copy the pieces of a request into the connection's buffers ---- */

static fs_http_conn_t *fs__conn_of(llhttp_t *p)
{
    return (fs_http_conn_t *)p->data;
}

static int fs__head_room(fs_http_conn_t *c, size_t n)
{
    if (c->head.len + n > c->server->o.max_header_bytes) {
        c->error_status = 431;
        return -1;
    }
    return 0;
}

static int fs__on_message_begin(llhttp_t *p)
{
    fs_http_conn_t *c = fs__conn_of(p);
    fs_buf_reset(&c->head);
    fs_buf_reset(&c->body);
    c->url_len = 0;
    c->nhdrs = 0;
    c->header_value_open = 0;
    c->in_message = 1;
    c->headers_done = 0;
    c->req_first = uv_now(c->server->loop);
    return 0;
}

static int fs__on_url(llhttp_t *p, const char *at, size_t n)
{
    fs_http_conn_t *c = fs__conn_of(p);
    if (fs__head_room(c, n)) return HPE_USER;
    fs_buf_append(&c->head, at, n);
    c->url_len += (uint32_t)n;
    return 0;
}

static int fs__on_header_field(llhttp_t *p, const char *at, size_t n)
{
    fs_http_conn_t *c = fs__conn_of(p);
    if (fs__head_room(c, n)) return HPE_USER;
    if (c->nhdrs == 0 || c->header_value_open) {
        if (c->nhdrs == FS_HTTP_MAX_HEADERS) {
            c->error_status = 431;
            return HPE_USER;
        }
        fs__hdr_t *h = &c->hdrs[c->nhdrs++];
        h->name_off = (uint16_t)c->head.len;
        h->name_len = 0;
        h->val_off = h->val_len = 0;
        c->header_value_open = 0;
    }
    fs_buf_append(&c->head, at, n);
    c->hdrs[c->nhdrs - 1].name_len += (uint16_t)n;
    return 0;
}

static int fs__on_header_value(llhttp_t *p, const char *at, size_t n)
{
    fs_http_conn_t *c = fs__conn_of(p);
    if (fs__head_room(c, n)) return HPE_USER;
    fs__hdr_t *h = &c->hdrs[c->nhdrs - 1];
    if (!c->header_value_open) {
        h->val_off = (uint16_t)c->head.len;
        c->header_value_open = 1;
    }
    fs_buf_append(&c->head, at, n);
    h->val_len += (uint16_t)n;
    return 0;
}

static int fs__on_headers_complete(llhttp_t *p)
{
    fs_http_conn_t *c = fs__conn_of(p);
    c->headers_done = 1;
    /* Refuse an announced oversized body before reading it. */
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->server->o.max_body_bytes) {
        c->error_status = 413;
        return HPE_USER;
    }
    return 0;
}

static int fs__on_body(llhttp_t *p, const char *at, size_t n)
{
    fs_http_conn_t *c = fs__conn_of(p);
    if (c->body.len + n > c->server->o.max_body_bytes) {
        c->error_status = 413;
        return HPE_USER;
    }
    fs_buf_append(&c->body, at, n);
    return 0;
}

static int fs__on_message_complete(llhttp_t *p)
{
    fs_http_conn_t *c = fs__conn_of(p);
    c->in_message = 0;
    c->keep_alive = llhttp_should_keep_alive(p) ? 1 : 0;
    /* Stop here: the request is handled before the next pipelined one is parsed. */
    return HPE_PAUSED;
}

/* ---- responses ---- */

const char *fs_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 308: return "Permanent Redirect";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

/* The Date header, formatted once per second. */
static const char *fs__date_header(void)
{
    static _Thread_local time_t last;
    static _Thread_local char buf[64];
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(buf, sizeof buf, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        last = now;
    }
    return buf;
}

static void fs__conn_unref(fs_http_conn_t *c)
{
    if (--c->refs > 0) return;
    fs_http_server_t *s = c->server;
    fs_buf_free(&c->in);
    fs_buf_free(&c->out);
    fs_buf_free(&c->head);
    fs_buf_free(&c->body);
    free(c);
    s->nalive--;
    fs__maybe_drained(s);
}

/* Responses not yet taken by the socket, per connection, before we stop answering (a client that
 * pipelines requests but never reads must not grow our memory). */
#define FS__MAX_UNSENT (256 * 1024)

static void fs__on_write(uv_write_t *w, int status)
{
    fs__write_t *wr = (fs__write_t *)w;
    fs_http_conn_t *c = wr->conn;
    free(wr);
    c->writes_pending--;
    if (status < 0 && !c->closing) {
        fs_debug("http_write_failed", "error=%s", uv_err_name(status));
        fs__conn_close(c);
    } else if (c->close_after_write && c->writes_pending == 0) {
        fs__conn_close(c);
    } else if (c->write_blocked && !c->closing && c->tcp.write_queue_size < FS__MAX_UNSENT / 2) {
        c->write_blocked = 0;
        uv_timer_stop(&c->timer); /* its idle deadline was for the blocked client */
        fs__conn_process(c);
    }
    fs__conn_unref(c);
}

/* Sends head+body with one writev. Most answers go out at once (uv_try_write, no allocation);
 * whatever the socket does not take is copied and queued. */
static void fs__send(fs_http_conn_t *c, const char *head, size_t hl, const char *body, size_t bl)
{
    uv_buf_t bufs[2] = {uv_buf_init((char *)head, (unsigned)hl), uv_buf_init((char *)body, (unsigned)bl)};
    int done = uv_try_write((uv_stream_t *)&c->tcp, bufs, bl ? 2 : 1);
    size_t sent = done > 0 ? (size_t)done : 0;
    if (done < 0 && done != UV_EAGAIN) {
        fs__conn_close(c);
        return;
    }
    if (sent == hl + bl) {
        if (c->close_after_write && c->writes_pending == 0) fs__conn_close(c);
        return;
    }
    size_t rest = hl + bl - sent;
    fs__write_t *wr = fs_xmalloc(sizeof *wr + rest);
    if (sent < hl) {
        memcpy(wr->data, head + sent, hl - sent);
        if (bl) memcpy(wr->data + hl - sent, body, bl);
    } else {
        memcpy(wr->data, body + (sent - hl), rest);
    }
    wr->len = rest;
    wr->conn = c;
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)wr->len);
    c->refs++;
    c->writes_pending++;
    int rc = uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, fs__on_write);
    if (rc < 0) {
        free(wr);
        c->writes_pending--;
        c->refs--;
        fs__conn_close(c);
    }
}

/* Writes an answer: at once, or, while a burst of pipelined requests is being parsed, into c->out
 * so that the whole burst is answered with one write when parsing stops (fs__flush_out). */
static void fs__write(fs_http_conn_t *c, const char *head, size_t hl, const char *body, size_t bl)
{
    if (c->processing) {
        fs_buf_append(&c->out, head, hl);
        fs_buf_append(&c->out, body, bl);
        return;
    }
    fs__send(c, head, hl, body, bl);
}

static void fs__flush_out(fs_http_conn_t *c)
{
    if (!c->out.len || c->closing) return;
    fs__send(c, c->out.data, c->out.len, NULL, 0);
    fs_buf_reset(&c->out);
    /* A burst's buffer can be large; do not keep it on an idle connection. */
    if (c->out.cap > 16384) fs_buf_free(&c->out);
}

/* Appends src to head at *n when it fits (head has room for FS__HEAD_MAX bytes). */
#define FS__HEAD_MAX 1024
static int fs__head_put(char *head, size_t *n, const char *src, size_t len)
{
    if (*n + len > FS__HEAD_MAX) return -1;
    memcpy(head + *n, src, len);
    *n += len;
    return 0;
}

static int fs__head_uint(char *head, size_t *n, size_t v)
{
    char tmp[24];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return fs__head_put(head, n, tmp + i, sizeof tmp - i);
}

/* The status line and headers are assembled by hand: this runs for every answer. */
static void fs__write_response(fs_http_conn_t *c, int status, const char *extra,
                               const char *ctype, const char *body, size_t bl, int close)
{
    char head[FS__HEAD_MAX];
    size_t n = 0;
    const char *reason = fs_http_reason(status), *date = fs__date_header();
    ctype = ctype ? ctype : "application/json";
    int bad = fs__head_put(head, &n, "HTTP/1.1 ", 9) || fs__head_uint(head, &n, (size_t)status) ||
              fs__head_put(head, &n, " ", 1) || fs__head_put(head, &n, reason, strlen(reason)) ||
              fs__head_put(head, &n, "\r\n", 2) || fs__head_put(head, &n, date, strlen(date)) ||
              fs__head_put(head, &n, "Content-Type: ", 14) ||
              fs__head_put(head, &n, ctype, strlen(ctype)) ||
              fs__head_put(head, &n, "\r\nContent-Length: ", 18) || fs__head_uint(head, &n, bl) ||
              fs__head_put(head, &n, "\r\n", 2) ||
              (close && fs__head_put(head, &n, "Connection: close\r\n", 19));
    /* Only the application's extra headers can be too long; they are dropped then. */
    if (!bad && extra) {
        size_t save = n;
        if (fs__head_put(head, &n, extra, strlen(extra))) n = save;
    }
    if (bad || fs__head_put(head, &n, "\r\n", 2)) fs_assert(!"response head over 1 KiB");
    if (close) c->close_after_write = 1;
    fs__write(c, head, n, body, bl);
}

void fs_http_respond(fs_http_req_t *req, int status, const char *extra_headers,
                     const char *content_type, const char *body, size_t body_len)
{
    fs_http_conn_t *c = req->conn;
    fs_assert(c->state == FS__BUSY);
    c->state = FS__READY;
    if (!c->closing) {
        int close = !c->keep_alive || c->peer_eof || c->server->draining;
        if (req->method == HTTP_HEAD) body_len = 0;
        fs__write_response(c, status, extra_headers, content_type, body, body_len, close);
        if (!close && !c->closing) {
            llhttp_resume(&c->parser);
            fs__conn_process(c);
        }
    }
    fs__conn_unref(c); /* the request's reference */
}

int fs_http_req_header(const fs_http_req_t *req, const char *lname, fs_str_t *out)
{
    fs_http_conn_t *c = req->conn;
    size_t ln = strlen(lname);
    for (int i = 0; i < c->nhdrs; i++) {
        const fs__hdr_t *h = &c->hdrs[i];
        if (h->name_len == ln && strncasecmp(c->head.data + h->name_off, lname, ln) == 0) {
            const char *v = c->head.data + h->val_off;
            size_t n = h->val_len;
            while (n && (*v == ' ' || *v == '\t')) v++, n--;
            while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
            out->p = v;
            out->n = n;
            return 1;
        }
    }
    return 0;
}

const char *fs_http_req_client_addr(const fs_http_req_t *req)
{
    fs_http_conn_t *c = req->conn;
    if (!c->peer_trusted) return c->peer;
    if (!c->client_done) {
        /* Several X-Forwarded-For lines read as one list, in order: walk them from the last. */
        const fs_http_server_t *s = c->server;
        uint8_t a[16];
        int have = 0;
        c->client_done = 1;
        c->client[0] = 0;
        for (int i = c->nhdrs - 1; i >= 0; i--) {
            const fs__hdr_t *h = &c->hdrs[i];
            if (h->name_len != 15 || strncasecmp(c->head.data + h->name_off, "x-forwarded-for", 15))
                continue;
            int rc = fs_http_xff_client(c->head.data + h->val_off, h->val_len, s->trusted,
                                        s->ntrusted, a);
            if (rc < 0) {
                have = 0; /* malformed: believe none of it */
                break;
            }
            have = 1;
            if (rc == 1) break;
        }
        if (have) fs_http_addr_text(a, c->client);
    }
    return c->client[0] ? c->client : c->peer;
}

/* ---- connection processing ---- */

static void fs__arm_timer(fs_http_conn_t *c);
static void fs__on_timer(uv_timer_t *t);

static void fs__dispatch(fs_http_conn_t *c)
{
    fs_http_req_t *r = &c->req;
    memset(r, 0, sizeof *r);
    r->conn = c;
    r->method = llhttp_get_method(&c->parser);
    r->route = -1;
    r->start_ns = 0;
    c->client_done = 0;
    const char *url = c->head.data ? c->head.data : "";
    size_t ul = c->url_len;
    const char *q = memchr(url, '?', ul);
    r->path.p = url;
    r->path.n = q ? (size_t)(q - url) : ul;
    r->query.p = q ? q + 1 : url + ul;
    r->query.n = q ? ul - r->path.n - 1 : 0;
    fs_buf_reserve(&c->body, 0);
    c->body.data[c->body.len] = 0;
    r->body = c->body.data;
    r->body_len = c->body.len;
    c->state = FS__BUSY;
    c->refs++;
    uv_timer_stop(&c->timer);
    c->server->o.on_request(r, c->server->o.user);
}

static void fs__protocol_error(fs_http_conn_t *c, int status)
{
    char body[128];
    const char *code = status == 413 ? "body_too_large"
                       : status == 431 ? "headers_too_large"
                       : status == 408 ? "request_timeout"
                                       : "bad_request";
    const char *msg = status == 413 ? "request body is over the size limit"
                      : status == 431 ? "request headers are over the size limit"
                      : status == 408 ? "the request did not arrive in time"
                                      : "malformed HTTP request";
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\",\"message\":\"%s\"}", code, msg);
    fs__write_response(c, status, NULL, NULL, body, (size_t)n, 1);
    if (c->reading && !c->closing) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
    uv_timer_stop(&c->timer);
}

static void fs__conn_process(fs_http_conn_t *c)
{
    if (c->processing) return; /* the outer call continues the loop */
    c->processing = 1;
    while (!c->closing && !c->close_after_write && c->state == FS__READY && c->in.len > 0) {
        if (c->out.len >= FS__MAX_UNSENT / 4) {
            c->processing = 0;
            fs__flush_out(c);
            c->processing = 1;
            if (c->closing) break;
        }
        if (c->tcp.write_queue_size >= FS__MAX_UNSENT) {
            /* The client is not reading its answers: stop until it does (fs__on_write resumes),
             * and give it idle_timeout_ms to start again. */
            c->write_blocked = 1;
            if (c->reading) {
                uv_read_stop((uv_stream_t *)&c->tcp);
                c->reading = 0;
            }
            uv_timer_start(&c->timer, fs__on_timer, (uint64_t)c->server->o.idle_timeout_ms, 0);
            c->timer_kind = FS__T_IDLE;
            break;
        }
        llhttp_errno_t e = llhttp_execute(&c->parser, c->in.data, c->in.len);
        if (e == HPE_OK) {
            fs_buf_reset(&c->in);
            break;
        }
        if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
            size_t used = (size_t)(llhttp_get_error_pos(&c->parser) - c->in.data);
            fs_buf_consume(&c->in, used);
            if (e == HPE_PAUSED_UPGRADE) c->keep_alive = 0; /* we never upgrade */
            fs__dispatch(c);
            continue;
        }
        fs__protocol_error(c, c->error_status ? c->error_status : 400);
        break;
    }
    c->processing = 0;
    fs__flush_out(c);
    if (c->closing || c->close_after_write) return;
    if (c->state == FS__READY && !c->write_blocked) {
        if (c->server->draining && !c->in_message && c->in.len == 0) {
            fs__conn_close(c);
            return;
        }
        fs__arm_timer(c);
    }
}

static void fs__alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    fs_http_conn_t *c = h->data;
    b->base = c->server->read_buf;
    b->len = sizeof c->server->read_buf;
}

/* Pipelined bytes are buffered while a request is being handled, up to this much. */
#define FS__MAX_BUFFERED (64 * 1024)

static void fs__on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    fs_http_conn_t *c = st->data;
    if (nread < 0) {
        if (c->state == FS__BUSY) {
            /* The peer is done sending (or gone): answer what it asked, then close. */
            c->peer_eof = 1;
            uv_read_stop(st);
            c->reading = 0;
        } else if (c->in_message && nread == UV_EOF) {
            fs__protocol_error(c, 400);
        } else {
            fs__conn_close(c);
        }
        return;
    }
    if (nread == 0) return;
    fs_buf_append(&c->in, b->base, (size_t)nread);
    if (c->state == FS__BUSY) {
        /* Keep reading while a request is handled (stopping and restarting costs two epoll_ctl
         * calls per request), but only up to a bound. */
        if (c->in.len > FS__MAX_BUFFERED) {
            uv_read_stop(st);
            c->reading = 0;
        }
        return;
    }
    fs__conn_process(c);
}

static void fs__start_reading(fs_http_conn_t *c)
{
    if (c->reading || c->closing) return;
    if (uv_read_start((uv_stream_t *)&c->tcp, fs__alloc, fs__on_read) == 0) c->reading = 1;
}

static void fs__on_timer(uv_timer_t *t)
{
    fs_http_conn_t *c = t->data;
    if (c->state != FS__READY) return;
    if (c->write_blocked) {
        fs_debug("http_slow_reader_close", "%s", "");
        fs__conn_close(c);
    } else if (c->in_message || c->in.len) {
        fs_debug("http_request_timeout", "stage=%s", c->headers_done ? "body" : "head");
        fs__protocol_error(c, 408);
    } else {
        fs_debug("http_idle_close", "%s", "");
        fs__conn_close(c);
    }
}

static void fs__arm_timer(fs_http_conn_t *c)
{
    /* Each deadline is set once, when its stage begins, and not pushed back by reads: a request
     * trickling in byte by byte cannot hold the connection longer than its deadline. */
    const fs_http_server_opts_t *o = &c->server->o;
    int active = uv_is_active((uv_handle_t *)&c->timer);
    if (c->in_message) {
        int kind = c->headers_done ? FS__T_BODY : FS__T_HEAD;
        if (!active || c->timer_kind != kind) {
            uint64_t due = c->req_first + (uint64_t)(kind == FS__T_BODY ? o->body_timeout_ms
                                                                          : o->header_timeout_ms);
            uint64_t now = uv_now(c->server->loop);
            uv_timer_start(&c->timer, fs__on_timer, due > now ? due - now : 1, 0);
            c->timer_kind = kind;
        }
    } else if (active && c->timer_kind == FS__T_DRAIN) {
        /* draining: it keeps the grace's end */
    } else if (!active || c->timer_kind != FS__T_IDLE) {
        uv_timer_start(&c->timer, fs__on_timer, (uint64_t)o->idle_timeout_ms, 0);
        c->timer_kind = FS__T_IDLE;
    }
    fs__start_reading(c);
}

static void fs__on_handle_closed(uv_handle_t *h)
{
    fs__conn_unref(h->data);
}

static void fs__conn_close(fs_http_conn_t *c)
{
    if (c->closing) return;
    c->closing = 1;
    fs_http_server_t *s = c->server;
    fs_buf_reset(&c->out);
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    if (s->o.open_gauge) atomic_fetch_sub_explicit(s->o.open_gauge, 1, memory_order_relaxed);
    if (c->counted) fs_http_limits_leave(s->o.limits, c->peer_addr);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, fs__on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, fs__on_handle_closed);
}

/* Reads the peer's address once: every request of the connection shares it. */
static void fs__conn_peer(fs_http_conn_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uint8_t a[16];
    memset(a, 0, sizeof a);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            a[10] = a[11] = 0xff;
            memcpy(a + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
        } else if (ss.ss_family == AF_INET6) {
            memcpy(a, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
        }
    }
    fs_http_addr_text(a, c->peer);
    memcpy(c->peer_addr, a, 16);
    c->peer_trusted = fs_http_cidrs_match(c->server->trusted, c->server->ntrusted, a) ? 1 : 0;
}

static void fs__on_connection(uv_stream_t *ls, int status)
{
    fs_http_server_t *s = ls->data;
    if (status < 0) {
        fs_warn("http_accept_failed", "error=%s", uv_err_name(status));
        return;
    }
    fs_http_conn_t *c = fs_xcalloc(1, sizeof *c);
    c->server = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->refs = 2; /* the two handles */
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    s->nalive++;
    if (s->o.open_gauge) atomic_fetch_add_explicit(s->o.open_gauge, 1, memory_order_relaxed);
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0) {
        fs__conn_close(c);
        return;
    }
    fs__conn_peer(c);
    if (s->o.limits) {
        int over = fs_http_limits_enter(s->o.limits, c->peer_addr);
        if (over) {
            /* Accepted only to be closed: leaving it in the backlog would stall the listener. */
            fs_debug("http_connection_rejected", "peer=%s limit=%s", c->peer,
                     over == 1 ? "max_connections" : "max_connections_per_addr");
            if (s->o.rejected_counter)
                atomic_fetch_add_explicit(s->o.rejected_counter, 1, memory_order_relaxed);
            fs__conn_close(c);
            return;
        }
        c->counted = 1;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
    c->parser.data = c;
    c->state = FS__READY;
    if (s->draining) {
        fs__conn_close(c);
        return;
    }
    fs__arm_timer(c);
}

/* ---- server ---- */

int fs_http_server_start(fs_http_server_t **out, uv_loop_t *loop, const fs_http_server_opts_t *o,
                         char *err, size_t errcap)
{
    struct sockaddr_storage addr;
    if (uv_ip4_addr(o->host, o->port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(o->host, o->port, (struct sockaddr_in6 *)&addr) != 0) {
        snprintf(err, errcap, "listen address %s is not a numeric IPv4/IPv6 address", o->host);
        return FS_EINVAL;
    }
    fs_http_cidr_t *trusted;
    size_t ntrusted;
    if (fs_http_cidrs_parse(o->trusted_proxies, &trusted, &ntrusted, err, errcap)) return FS_EINVAL;
    fs_http_server_t *s = fs_xcalloc(1, sizeof *s);
    s->loop = loop;
    s->o = *o;
    s->o.trusted_proxies = NULL; /* not kept: the caller owns the text */
    s->trusted = trusted;
    s->ntrusted = ntrusted;
    if (s->o.header_timeout_ms <= 0) s->o.header_timeout_ms = s->o.idle_timeout_ms;
    if (s->o.body_timeout_ms <= 0)
        s->o.body_timeout_ms = s->o.header_timeout_ms > s->o.idle_timeout_ms ? s->o.header_timeout_ms
                                                                              : s->o.idle_timeout_ms;
    /* Header offsets are 16 bits (fs__hdr_t). */
    if (s->o.max_header_bytes > 65535) s->o.max_header_bytes = 65535;
    llhttp_settings_init(&s->settings);
    s->settings.on_message_begin = fs__on_message_begin;
    s->settings.on_url = fs__on_url;
    s->settings.on_header_field = fs__on_header_field;
    s->settings.on_header_value = fs__on_header_value;
    s->settings.on_headers_complete = fs__on_headers_complete;
    s->settings.on_body = fs__on_body;
    s->settings.on_message_complete = fs__on_message_complete;

    uv_tcp_init_ex(loop, &s->listener, addr.ss_family);
    s->listener.data = s;
    int rc = 0;
    if (o->reuseport) {
        uv_os_fd_t fd;
        int one = 1;
        uv_fileno((uv_handle_t *)&s->listener, &fd);
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) rc = uv_translate_sys_error(errno);
    }
    if (rc == 0) rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 4096, fs__on_connection);
    if (rc != 0) {
        snprintf(err, errcap, "cannot listen on %s:%d: %s", o->host, o->port, uv_strerror(rc));
        uv_close((uv_handle_t *)&s->listener, NULL);
        /* The handle lives inside s: let the loop finish closing it before freeing. */
        uv_run(loop, UV_RUN_NOWAIT);
        free(s->trusted);
        free(s);
        return FS_EIO;
    }
    *out = s;
    return FS_OK;
}

static void fs__on_listener_closed(uv_handle_t *h)
{
    fs_http_server_t *s = h->data;
    s->listener_closed = 1;
    fs__maybe_drained(s);
}

static void fs__maybe_drained(fs_http_server_t *s)
{
    /* Connections unlink themselves when they start closing; wait until their memory is gone too. */
    if (!s->listener_closed || s->nalive > 0) return;
    if (s->drained) {
        void (*cb)(void *) = s->drained;
        s->drained = NULL;
        cb(s->drained_arg); /* may call fs_http_server_close, which frees s */
        return;
    }
    if (s->closing) {
        free(s->trusted);
        free(s);
    }
}

void fs_http_server_drain(fs_http_server_t *s, void (*done)(void *arg), void *arg)
{
    if (s->draining) return;
    s->draining = 1;
    s->drained = done;
    s->drained_arg = arg;
    uv_close((uv_handle_t *)&s->listener, fs__on_listener_closed);
    for (fs_http_conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->state != FS__READY || c->in_message || c->in.len) continue; /* busy */
        if (s->o.drain_grace_ms <= 0) {
            fs__conn_close(c);
        } else { /* its idle deadline becomes the grace's end (fs__on_timer closes it) */
            uv_timer_start(&c->timer, fs__on_timer, (uint64_t)s->o.drain_grace_ms, 0);
            c->timer_kind = FS__T_DRAIN;
        }
    }
}

int fs_http_req_draining(const fs_http_req_t *req)
{
    return req->conn->server->draining;
}

void fs_http_server_close(fs_http_server_t *s)
{
    s->closing = 1;
    s->drained = NULL;
    if (!s->draining) {
        s->draining = 1;
        uv_close((uv_handle_t *)&s->listener, fs__on_listener_closed);
    }
    while (s->conns) fs__conn_close(s->conns);
    fs__maybe_drained(s);
}

size_t fs_http_server_connections(const fs_http_server_t *s)
{
    return s->nconns;
}
