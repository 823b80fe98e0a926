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
 * decided it.
 *
 * Lifetimes: the hub outlives every loop (created before they run, freed after they stopped).
 * A mailbox's async handle is sent to only under its mutex, and only while the loop leads
 * (`leading`, for `in`) or has requests out (for `back`); it is closed by its own loop once it
 * leads no more and has nothing out, so no send can reach a closed handle. */
#include "stock.h"
#include "stock_internal.h"
#include "../common/log.h"

#include <stdlib.h>

typedef struct {
    fs_reserve_item_t *head, **tail;
} fs__list_t;

struct fs__mailbox {
    uv_mutex_t mu;
    uv_async_t async;
    int leading;    /* takes other loops' requests (under mu): until it stops for good */
    int redis_ok;   /* its Redis connection is ready (under mu): takes them only then */
    int open;       /* the async handle is initialized and not closing (owner loop only) */
    fs__list_t in;   /* requests of other loops for SKUs this loop leads */
    fs__list_t back; /* this loop's requests, answered by their SKU's leader */
};

struct fs_stock_hub {
    int n;
    fs__mailbox_t *box;
};

static void fs__list_init(fs__list_t *l)
{
    l->head = NULL;
    l->tail = &l->head;
}

static void fs__list_push(fs__list_t *l, fs_reserve_item_t *it)
{
    it->next = NULL;
    *l->tail = it;
    l->tail = &it->next;
}

static fs_reserve_item_t *fs__list_take(fs__list_t *l)
{
    fs_reserve_item_t *all = l->head;
    fs__list_init(l);
    return all;
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

static void fs__on_mail(uv_async_t *a)
{
    fs_stock_t *st = a->data;
    fs__mailbox_t *box = st->box;
    uv_mutex_lock(&box->mu);
    fs_reserve_item_t *in = fs__list_take(&box->in);
    fs_reserve_item_t *back = fs__list_take(&box->back);
    uv_mutex_unlock(&box->mu);
    fs__lead(st, in);
    while (back) {
        fs_reserve_item_t *next = back->next;
        fs__returned(st, back);
        back = next;
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
    uv_mutex_unlock(&box->mu);
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
