/* Redis over TLS: the pump between hiredis's unix socket and Redis's TLS connection (see
 * redis_tls.h). */
#include "redis_tls.h"
#include "../common/buf.h"
#include "../common/log.h"
#include "flashsale/error.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FS__ACCEPT_WAIT_MS 5000

typedef struct {
    uv_pipe_t listener; /* until hiredis connects */
    uv_pipe_t plain;    /* hiredis's side, once accepted */
    uv_tcp_t tcp;       /* Redis's side */
    uv_connect_t connect;
    uv_timer_t timer; /* gives up when hiredis does not connect */
    fs_tls_t *tls;
    fs_buf_t pending; /* what hiredis wrote before the handshake was done */
    char path[108];
    char name[256];
    int listening, accepted, secure, ended;
    int open; /* handles not closed yet */
} fs__pump_t;

typedef struct {
    uv_write_t req;
    fs__pump_t *p;
    char data[];
} fs__write_t;

static uv_once_t fs__dir_once = UV_ONCE_INIT;
static char fs__dir[64];
static atomic_uint fs__seq;

static void fs__remove_dir(void)
{
    rmdir(fs__dir); /* empty: each socket's path goes once hiredis is connected, or at the end */
}

static void fs__make_dir(void)
{
    snprintf(fs__dir, sizeof fs__dir, "/tmp/flashsale-redis-tls.XXXXXX");
    if (!mkdtemp(fs__dir)) { /* mode 0700 */
        fs__dir[0] = 0;
        return;
    }
    atexit(fs__remove_dir);
}

static void fs__on_closed(uv_handle_t *h)
{
    fs__pump_t *p = h->data;
    if (--p->open > 0) return;
    fs_tls_free(p->tls);
    fs_buf_free(&p->pending);
    free(p);
}

/* Ends the pump: closes both sides (hiredis sees its connection end) and frees it afterwards. */
static void fs__end(fs__pump_t *p, const char *why)
{
    if (p->ended) return;
    p->ended = 1;
    if (why) fs_warn("redis_tls_failed", "host=%s error=\"%s\"", p->name, why);
    if (p->listening) {
        p->listening = 0;
        unlink(p->path);
        uv_close((uv_handle_t *)&p->listener, fs__on_closed);
    }
    if (p->accepted) uv_close((uv_handle_t *)&p->plain, fs__on_closed);
    uv_close((uv_handle_t *)&p->tcp, fs__on_closed);
    uv_close((uv_handle_t *)&p->timer, fs__on_closed);
}

static void fs__on_written(uv_write_t *w, int status)
{
    fs__write_t *x = (fs__write_t *)w;
    if (status < 0 && status != UV_ECANCELED) fs__end(x->p, NULL);
    free(x);
}

static void fs__send(fs__pump_t *p, uv_stream_t *to, const char *data, size_t n)
{
    if (n == 0 || p->ended) return;
    fs__write_t *x = fs_xmalloc(sizeof *x + n);
    x->p = p;
    memcpy(x->data, data, n);
    uv_buf_t b = uv_buf_init(x->data, (unsigned)n);
    if (uv_write(&x->req, to, &b, 1, fs__on_written) < 0) {
        free(x);
        fs__end(p, NULL);
    }
}

/* Sends the ciphertext the engine has for Redis. */
static void fs__flush_tls(fs__pump_t *p)
{
    fs_buf_t out;
    fs_buf_init(&out);
    fs_tls_take_output(p->tls, &out);
    fs__send(p, (uv_stream_t *)&p->tcp, out.data, out.len);
    fs_buf_free(&out);
}

/* Hands hiredis what Redis sent, decrypted. */
static void fs__tls_to_plain(fs__pump_t *p)
{
    static _Thread_local char buf[65536];
    char err[300];
    for (;;) {
        int r = fs_tls_read(p->tls, buf, sizeof buf, err, sizeof err);
        if (r > 0) {
            if (p->accepted) fs__send(p, (uv_stream_t *)&p->plain, buf, (size_t)r);
            continue;
        }
        if (r == 0)
            fs__end(p, NULL); /* close_notify */
        else if (r != FS_EAGAIN)
            fs__end(p, err);
        break;
    }
    if (!p->ended) fs__flush_tls(p);
}

static void fs__encrypt(fs__pump_t *p, const char *data, size_t n)
{
    char err[300];
    if (fs_tls_write(p->tls, data, n, err, sizeof err)) {
        fs__end(p, err);
        return;
    }
    fs__flush_tls(p);
}

static void fs__handshake(fs__pump_t *p)
{
    char err[300];
    int rc = fs_tls_handshake(p->tls, err, sizeof err);
    fs__flush_tls(p);
    if (rc == FS_EAGAIN) return;
    if (rc) {
        fs__end(p, err);
        return;
    }
    p->secure = 1;
    if (p->pending.len) fs__encrypt(p, p->pending.data, p->pending.len);
    fs_buf_reset(&p->pending);
    if (!p->ended) fs__tls_to_plain(p); /* application data that came with the last flight */
}

static void fs__alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    static _Thread_local char buf[65536];
    (void)h;
    (void)suggested;
    *b = uv_buf_init(buf, sizeof buf);
}

static void fs__on_tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    fs__pump_t *p = s->data;
    if (n < 0) {
        fs__end(p, n == UV_EOF ? NULL : uv_strerror((int)n));
        return;
    }
    if (n == 0 || p->ended) return;
    fs_tls_feed(p->tls, b->base, (size_t)n);
    if (p->secure)
        fs__tls_to_plain(p);
    else
        fs__handshake(p);
}

static void fs__on_plain_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    fs__pump_t *p = s->data;
    if (n < 0) {
        fs__end(p, NULL); /* hiredis let the connection go */
        return;
    }
    if (n == 0 || p->ended) return;
    if (p->secure)
        fs__encrypt(p, b->base, (size_t)n);
    else
        fs_buf_append(&p->pending, b->base, (size_t)n);
}

static void fs__on_tcp_connected(uv_connect_t *c, int status)
{
    fs__pump_t *p = c->data;
    if (p->ended) return;
    if (status < 0) {
        fs__end(p, uv_strerror(status));
        return;
    }
    uv_read_start((uv_stream_t *)&p->tcp, fs__alloc, fs__on_tcp_read);
    fs__handshake(p);
}

static void fs__on_accept(uv_stream_t *l, int status)
{
    fs__pump_t *p = l->data;
    if (status < 0 || p->ended || p->accepted) return;
    uv_pipe_init(l->loop, &p->plain, 0);
    p->plain.data = p;
    p->open++;
    p->accepted = 1;
    if (uv_accept(l, (uv_stream_t *)&p->plain) < 0) {
        fs__end(p, "cannot accept hiredis's connection");
        return;
    }
    p->listening = 0; /* one connection only; its path is not needed any more */
    unlink(p->path);
    uv_close((uv_handle_t *)&p->listener, fs__on_closed);
    uv_read_start((uv_stream_t *)&p->plain, fs__alloc, fs__on_plain_read);
}

static void fs__on_timer(uv_timer_t *t)
{
    fs__pump_t *p = t->data;
    if (!p->accepted) fs__end(p, "hiredis did not connect to the pump");
}

int fs_redis_tls_dial(uv_loop_t *loop, fs_tls_ctx_t *ctx, const char *ip, int port,
                      const char *name, char *path, size_t cap)
{
    uv_once(&fs__dir_once, fs__make_dir);
    if (!fs__dir[0]) return UV_EACCES;
    struct sockaddr_storage addr;
    int is6 = strchr(ip, ':') != NULL;
    int rc = is6 ? uv_ip6_addr(ip, port, (struct sockaddr_in6 *)&addr)
                 : uv_ip4_addr(ip, port, (struct sockaddr_in *)&addr);
    if (rc < 0) return rc;
    fs__pump_t *p = fs_xcalloc(1, sizeof *p);
    fs_buf_init(&p->pending);
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(p->path, sizeof p->path, "%s/%ld-%u.sock", fs__dir, (long)getpid(),
             atomic_fetch_add(&fs__seq, 1));
    unsigned char a6[sizeof(struct in6_addr)];
    int name_is_ip = inet_pton(AF_INET, name, a6) == 1 || inet_pton(AF_INET6, name, a6) == 1;
    p->tls = fs_tls_new(ctx, name, name_is_ip);
    uv_pipe_init(loop, &p->listener, 0);
    uv_tcp_init(loop, &p->tcp);
    uv_timer_init(loop, &p->timer);
    p->listener.data = p->tcp.data = p->timer.data = p->connect.data = p;
    p->open = 3;
    p->listening = 1;
    rc = uv_pipe_bind(&p->listener, p->path);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&p->listener, 1, fs__on_accept);
    if (rc == 0) {
        uv_tcp_nodelay(&p->tcp, 1);
        rc = uv_tcp_connect(&p->connect, &p->tcp, (const struct sockaddr *)&addr,
                            fs__on_tcp_connected);
    }
    if (rc < 0) {
        fs__end(p, uv_strerror(rc));
        return rc;
    }
    uv_timer_start(&p->timer, fs__on_timer, FS__ACCEPT_WAIT_MS, 0);
    snprintf(path, cap, "%s", p->path);
    return 0;
}

int fs_redis_tls_ctx(const fs_redis_url_t *u, const char *ca_file, const char *cert_file,
                     const char *key_file, fs_tls_ctx_t **out, char *err, size_t errcap)
{
    *out = NULL;
    if (!u->tls) return FS_OK;
    fs_tls_ctx_t *ctx;
    if (fs_tls_ctx_new(&ctx, ca_file, err, errcap)) return FS_EINVAL;
    if (cert_file && cert_file[0] && fs_tls_ctx_set_cert(ctx, cert_file, key_file, err, errcap)) {
        fs_tls_ctx_free(ctx);
        return FS_EINVAL;
    }
    *out = ctx;
    return FS_OK;
}
