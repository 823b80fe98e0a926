/* hiredis event adapter for libuv with fewer system calls (see redis_uv.h). */
#include "redis_uv.h"
#include "../common/log.h"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <stdlib.h>

/* Owned by the redisAsyncContext it is attached to (ac->ev.data); freed after both handles are
 * closed, which hiredis starts through the cleanup hook when it frees the context. */
typedef struct {
    redisAsyncContext *ac; /* NULL once hiredis is done with us */
    uv_poll_t poll;
    uv_prepare_t flush;
    int events;   /* what poll is started with (UV_READABLE | UV_WRITABLE) */
    int flushing; /* inside the flush handle's call to redisAsyncHandleWrite */
    int open;     /* handles not yet closed */
} fs__uv_ev_t;

static void fs__uv_on_poll(uv_poll_t *h, int status, int events)
{
    fs__uv_ev_t *p = h->data;
    if (status < 0) {
        /* libuv has stopped the handle (an error on the socket): let hiredis find the error,
         * and start watching again if it asks to. */
        p->events = 0;
        events = UV_READABLE | UV_WRITABLE;
    }
    if (p->ac && (events & UV_READABLE)) redisAsyncHandleRead(p->ac);
    if (p->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(p->ac);
}

static void fs__uv_watch(fs__uv_ev_t *p, int events)
{
    if (events == p->events) return;
    p->events = events;
    if (events) uv_poll_start(&p->poll, events, fs__uv_on_poll);
    else uv_poll_stop(&p->poll);
}

static void fs__uv_on_flush(uv_prepare_t *h)
{
    fs__uv_ev_t *p = h->data;
    uv_prepare_stop(h);
    if (!p->ac) return;
    p->flushing = 1;
    redisAsyncHandleWrite(p->ac); /* may free the context (an error): p stays until closed */
    p->flushing = 0;
}

static void fs__uv_add_read(void *arg)
{
    fs__uv_ev_t *p = arg;
    fs__uv_watch(p, p->events | UV_READABLE);
}

static void fs__uv_del_read(void *arg)
{
    fs__uv_ev_t *p = arg;
    fs__uv_watch(p, p->events & ~UV_READABLE);
}

static void fs__uv_add_write(void *arg)
{
    fs__uv_ev_t *p = arg;
    if (p->events & UV_WRITABLE) return; /* already waiting for room */
    if ((p->ac->c.flags & REDIS_CONNECTED) && !p->flushing) {
        uv_prepare_start(&p->flush, fs__uv_on_flush);
        return;
    }
    /* Connecting (writable means connected), or the flush could not write everything. */
    fs__uv_watch(p, p->events | UV_WRITABLE);
}

static void fs__uv_del_write(void *arg)
{
    fs__uv_ev_t *p = arg;
    uv_prepare_stop(&p->flush);
    fs__uv_watch(p, p->events & ~UV_WRITABLE);
}

static void fs__uv_on_close(uv_handle_t *h)
{
    fs__uv_ev_t *p = h->data;
    if (--p->open == 0) free(p);
}

static void fs__uv_cleanup(void *arg)
{
    fs__uv_ev_t *p = arg;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->poll, fs__uv_on_close);
    uv_close((uv_handle_t *)&p->flush, fs__uv_on_close);
}

int fs_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    if (ac->ev.data) return REDIS_ERR;
    fs__uv_ev_t *p = calloc(1, sizeof *p);
    if (!p) return REDIS_ERR;
    if (uv_poll_init(loop, &p->poll, ac->c.fd) != 0) {
        free(p);
        return REDIS_ERR;
    }
    uv_prepare_init(loop, &p->flush);
    p->ac = ac;
    p->open = 2;
    p->poll.data = p;
    p->flush.data = p;
    ac->ev.data = p;
    ac->ev.addRead = fs__uv_add_read;
    ac->ev.delRead = fs__uv_del_read;
    ac->ev.addWrite = fs__uv_add_write;
    ac->ev.delWrite = fs__uv_del_write;
    ac->ev.cleanup = fs__uv_cleanup;
    return REDIS_OK;
}

struct fs_redis_lookup {
    uv_getaddrinfo_t req;
    fs_redis_lookup_cb done;
    void *owner; /* NULL once detached */
};

static void fs__on_lookup(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    fs_redis_lookup_t *l = req->data;
    char ip[INET6_ADDRSTRLEN] = "";
    const char *err = status < 0 ? uv_strerror(status) : NULL;
    if (!err && res && res->ai_family == AF_INET)
        uv_ip4_name((const struct sockaddr_in *)res->ai_addr, ip, sizeof ip);
    else if (!err && res && res->ai_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)res->ai_addr, ip, sizeof ip);
    if (!err && !ip[0]) err = "no address";
    uv_freeaddrinfo(res);
    if (l->owner) l->done(l->owner, err ? NULL : ip, err);
    free(l);
}

fs_redis_lookup_t *fs_redis_lookup(uv_loop_t *loop, const char *host, fs_redis_lookup_cb done,
                                   void *owner)
{
    unsigned char addr[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1) {
        done(owner, host, NULL);
        return NULL;
    }
    fs_redis_lookup_t *l = fs_xcalloc(1, sizeof *l);
    l->done = done;
    l->owner = owner;
    l->req.data = l;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = uv_getaddrinfo(loop, &l->req, fs__on_lookup, host, NULL, &hints);
    if (rc < 0) {
        free(l);
        done(owner, NULL, uv_strerror(rc));
        return NULL;
    }
    return l;
}

void fs_redis_lookup_detach(fs_redis_lookup_t *l)
{
    l->owner = NULL;
    uv_cancel((uv_req_t *)&l->req); /* it may have started: fs__on_lookup frees l either way */
}
