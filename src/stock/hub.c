/* The hub of a server's event loops: one SKU, one leader loop (see stock.h).
 *
 * Each loop has a mailbox: a mutex, two lists and a uv_async_t on that loop. Another loop hands a
 * reservation to the SKU's leader by appending it to the leader's `in` list; the leader queues it
 * with its own, and once it is answered appends it to the `back` list of the loop it came from,
 * which answers the caller there (the caller's memory and connection belong to that loop). A
 * uv_async_send per append wakes the loop; libuv coalesces the wake-ups of one turn.
 *
 * A loop leads only while its own Redis connection is ready: while it is not (reconnecting after
 * a lost connection or a command past its deadline), the other loops send its SKUs' requests
 * themselves, on their own connections, rather than have it answer them 503; and it hands its own
 * new requests that need Redis to a loop whose connection is ready (fs__hub_forward_any; what it
 * knows, such as a SKU being sold out, it still answers from memory). What it had queued and
 * not sent when its connection went goes the same way: its own requests to another loop, other
 * loops' back to them, to send themselves (it->retry). A request is moved so once at most
 * (it->rerouted); what was in flight on the lost connection is answered 503, as Redis may have
 * decided it. Its other calls (confirm, cancel, a launch's waiting room, operator calls: anything
 * through fs_stock_command) go on another loop's connection meanwhile: a copy of the call goes to
 * that loop's `rin` list, and a copy of the reply comes back on this loop's `rback` list, where
 * the caller's callback runs (fs__remote_t).
 *
 * Lifetimes: the hub outlives every loop (created before they run, freed after they stopped).
 * A mailbox's async handle is sent to only under its mutex, and only while the loop leads
 * (`leading`, for `in`) or has requests out (for `back`); it is closed by its own loop once it
 * leads no more and has nothing out, so no send can reach a closed handle. */
#include "stock.h"
#include "stock_internal.h"
#include "../common/log.h"
#include "flashsale/error.h"

#include <stdlib.h>
#include <string.h>

/* A call sent on another loop's Redis connection for a loop whose own is down; one allocation with
 * its arguments. The reply comes back as a copy (reply NULL when err). */
typedef struct fs__remote {
    struct fs__remote *next;
    int origin;      /* the loop whose caller waits */
    fs_stock_t *via; /* the loop that sends it */
    fs_redis_cb cb;
    void *arg;
    int argc;
    const char **argv;
    size_t *lens;
    redisReply *reply;
    int err;
} fs__remote_t;

/* NAME_t, a first-in first-out list of TYPE linked by its `next`, with NAME_init, NAME_push and
 * NAME_take (all of it, emptying the list). */
#define FS__FIFO(NAME, TYPE)                                                                      \
    typedef struct {                                                                              \
        TYPE *head, **tail;                                                                       \
    } NAME##_t;                                                                                   \
    static void NAME##_init(NAME##_t *l)                                                          \
    {                                                                                             \
        l->head = NULL;                                                                           \
        l->tail = &l->head;                                                                       \
    }                                                                                             \
    static void NAME##_push(NAME##_t *l, TYPE *x)                                                 \
    {                                                                                             \
        x->next = NULL;                                                                           \
        *l->tail = x;                                                                             \
        l->tail = &x->next;                                                                       \
    }                                                                                             \
    static TYPE *NAME##_take(NAME##_t *l)                                                         \
    {                                                                                             \
        TYPE *all = l->head;                                                                      \
        NAME##_init(l);                                                                           \
        return all;                                                                               \
    }
FS__FIFO(fs__list, fs_reserve_item_t)
FS__FIFO(fs__rlist, fs__remote_t)

struct fs__mailbox {
    uv_mutex_t mu;
    uv_async_t async;
    int leading;    /* takes other loops' requests (under mu): until it stops for good */
    int redis_ok;   /* its Redis connection is ready (under mu): takes them only then */
    int open;       /* the async handle is initialized and not closing (owner loop only) */
    fs__list_t in;   /* requests of other loops for SKUs this loop leads */
    fs__list_t back; /* this loop's requests, answered by their SKU's leader */
    fs__rlist_t rin;   /* other loops' calls, to send on this loop's connection */
    fs__rlist_t rback; /* this loop's calls sent by another loop, with their replies */
};

struct fs_stock_hub {
    int n;
    fs__mailbox_t *box;
};

/* A deep copy of reply r (hiredis frees its own after the callback), and its release. */
static redisReply *fs__reply_copy(const redisReply *r)
{
    redisReply *c = fs_xcalloc(1, sizeof *c);
    c->type = r->type;
    c->integer = r->integer;
    if (r->str) {
        c->str = fs_xmalloc(r->len + 1);
        memcpy(c->str, r->str, r->len);
        c->str[r->len] = 0;
        c->len = r->len;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        c->element = fs_xcalloc(r->elements, sizeof *c->element);
        c->elements = r->elements;
        for (size_t i = 0; i < r->elements; i++)
            if (r->element[i]) c->element[i] = fs__reply_copy(r->element[i]);
    }
    return c;
}

static void fs__reply_free(redisReply *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->elements; i++) fs__reply_free(r->element[i]);
    free(r->element);
    free(r->str);
    free(r);
}

fs_stock_hub_t *fs_stock_hub_new(int loops)
{
    fs_stock_hub_t *h = fs_xcalloc(1, sizeof *h);
    h->n = loops;
    h->box = fs_xcalloc((size_t)loops, sizeof *h->box);
    for (int i = 0; i < loops; i++) {
        if (uv_mutex_init(&h->box[i].mu)) fs_panic(__FILE__, __LINE__, "uv_mutex_init");
        fs__list_init(&h->box[i].in);
        fs__list_init(&h->box[i].back);
        fs__rlist_init(&h->box[i].rin);
        fs__rlist_init(&h->box[i].rback);
    }
    return h;
}

void fs_stock_hub_free(fs_stock_hub_t *h)
{
    if (!h) return;
    for (int i = 0; i < h->n; i++) uv_mutex_destroy(&h->box[i].mu);
    free(h->box);
    free(h);
}

int fs__hub_leader(const fs_stock_hub_t *h, uint32_t sku_hash)
{
    return (int)(sku_hash % (uint32_t)h->n);
}

/* Hands call rc, answered (reply or err set), back to the loop whose caller waits. */
static void fs__remote_back(fs_stock_hub_t *h, fs__remote_t *rc)
{
    fs__mailbox_t *box = &h->box[rc->origin];
    uv_mutex_lock(&box->mu);
    fs__rlist_push(&box->rback, rc);
    uv_async_send(&box->async);
    uv_mutex_unlock(&box->mu);
}

static void fs__on_remote_reply(redisReply *reply, int err, void *arg)
{
    fs__remote_t *rc = arg;
    fs_stock_t *st = rc->via;
    rc->err = err;
    rc->reply = !err && reply ? fs__reply_copy(reply) : NULL;
    if (!err && !reply) rc->err = FS_EIO;
    st->foreign--;
    fs__remote_back(st->hub, rc);
    fs__hub_settle(st);
}

static void fs__on_mail(uv_async_t *a)
{
    fs_stock_t *st = a->data;
    fs__mailbox_t *box = st->box;
    uv_mutex_lock(&box->mu);
    fs_reserve_item_t *in = fs__list_take(&box->in);
    fs_reserve_item_t *back = fs__list_take(&box->back);
    fs__remote_t *rin = fs__rlist_take(&box->rin);
    fs__remote_t *rback = fs__rlist_take(&box->rback);
    uv_mutex_unlock(&box->mu);
    fs__lead(st, in);
    while (back) {
        fs_reserve_item_t *next = back->next;
        fs__returned(st, back);
        back = next;
    }
    while (rin) { /* sent here; st->foreign keeps the connection open for their replies */
        fs__remote_t *next = rin->next;
        rin->via = st;
        st->foreign++;
        fs_redis_command(st->redis, fs__on_remote_reply, rin, rin->argc, rin->argv, rin->lens);
        rin = next;
    }
    while (rback) {
        fs__remote_t *next = rback->next;
        st->forwarded_out--;
        rback->cb(rback->reply, rback->err, rback->arg);
        fs__reply_free(rback->reply);
        free(rback);
        rback = next;
    }
    fs__hub_settle(st);
}

void fs__hub_attach(fs_stock_t *st)
{
    fs__mailbox_t *box = &st->hub->box[st->index];
    st->box = box;
    uv_async_init(st->loop, &box->async, fs__on_mail);
    box->async.data = st;
    box->open = 1;
    uv_mutex_lock(&box->mu);
    box->leading = 1;
    box->redis_ok = fs_redis_ready(st->redis);
    uv_mutex_unlock(&box->mu);
}

int fs__hub_forward(fs_stock_t *st, int leader, fs_reserve_item_t *it)
{
    fs__mailbox_t *box = &st->hub->box[leader];
    uv_mutex_lock(&box->mu);
    if (!box->leading || !box->redis_ok) { /* stopping or not connected: this loop sends it */
        uv_mutex_unlock(&box->mu);
        return 0;
    }
    it->origin = st->index;
    fs__list_push(&box->in, it);
    uv_async_send(&box->async);
    uv_mutex_unlock(&box->mu);
    st->forwarded_out++;
    return 1;
}

int fs__hub_forward_any(fs_stock_t *st, int first, fs_reserve_item_t *it)
{
    int n = st->hub->n;
    if (first >= 0 && first != st->index && fs__hub_forward(st, first, it)) return 1;
    for (int k = 1; k < n; k++) {
        int i = (st->index + k) % n;
        if (i != first && fs__hub_forward(st, i, it)) return 1;
    }
    return 0;
}

int fs__hub_command(fs_stock_t *st, fs_redis_cb cb, void *arg, int argc, const char **argv,
                    const size_t *lens)
{
    fs_stock_hub_t *h = st->hub;
    size_t bytes = 0;
    for (int i = 0; i < argc; i++) bytes += lens[i];
    size_t head = sizeof(fs__remote_t) + (size_t)argc * (sizeof(char *) + sizeof(size_t));
    fs__remote_t *rc = fs_xmalloc(head + bytes); /* the call, its argv and lens, their bytes */
    rc->origin = st->index;
    rc->via = NULL;
    rc->cb = cb;
    rc->arg = arg;
    rc->argc = argc;
    rc->argv = (const char **)(rc + 1);
    rc->lens = (size_t *)(rc->argv + argc);
    char *p = (char *)(rc->lens + argc);
    for (int i = 0; i < argc; i++) {
        memcpy(p, argv[i], lens[i]);
        rc->argv[i] = p;
        rc->lens[i] = lens[i];
        p += lens[i];
    }
    rc->reply = NULL;
    rc->err = 0;
    for (int k = 1; k < h->n; k++) {
        fs__mailbox_t *box = &h->box[(st->index + k) % h->n];
        uv_mutex_lock(&box->mu);
        if (box->leading && box->redis_ok) {
            fs__rlist_push(&box->rin, rc);
            uv_async_send(&box->async);
            uv_mutex_unlock(&box->mu);
            st->forwarded_out++;
            return 1;
        }
        uv_mutex_unlock(&box->mu);
    }
    free(rc);
    return 0;
}

void fs__hub_send_back(fs_stock_t *st, fs_reserve_item_t *it)
{
    fs__mailbox_t *box = &st->hub->box[it->origin];
    uv_mutex_lock(&box->mu);
    fs__list_push(&box->back, it);
    uv_async_send(&box->async);
    uv_mutex_unlock(&box->mu);
}

void fs__hub_redis_ready(fs_stock_t *st, int ready)
{
    fs__mailbox_t *box = st->box;
    uv_mutex_lock(&box->mu);
    box->redis_ok = ready;
    uv_mutex_unlock(&box->mu);
}

fs_reserve_item_t *fs__hub_stop_leading(fs_stock_t *st)
{
    fs__mailbox_t *box = st->box;
    uv_mutex_lock(&box->mu);
    box->leading = 0;
    fs_reserve_item_t *in = fs__list_take(&box->in);
    fs__remote_t *rin = fs__rlist_take(&box->rin);
    uv_mutex_unlock(&box->mu);
    while (rin) { /* not sent: back to their loops, unavailable */
        fs__remote_t *next = rin->next;
        rin->err = FS_EUNAVAIL;
        fs__remote_back(st->hub, rin);
        rin = next;
    }
    return in;
}

int fs__hub_close(fs_stock_t *st, uv_close_cb cb)
{
    fs__mailbox_t *box = st->box;
    if (!box->open || st->forwarded_out > 0) return 0;
    box->open = 0;
    uv_close((uv_handle_t *)&box->async, cb);
    return 1;
}
