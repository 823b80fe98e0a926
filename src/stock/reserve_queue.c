/* Per-SKU reservation queues and coalescing (see stock.h).
 *
 * Requests for one SKU are appended to that SKU's queue in arrival order. A SKU has at most
 * FS__MAX_WAVES "wave" of fs_reserve calls in flight: while it is, new requests wait in the
 * queue, and when an answer arrives everything that accumulated is sent as the next wave (calls of at most
 * FS__BATCH_MAX requests, pipelined on the one connection). Under load, batches therefore grow by
 * themselves to whatever arrived during one Redis round trip, which is what makes one Function
 * call per batch cheaper than one per request. A check handle, run after each I/O poll of the
 * loop, sends the waves.
 *
 * Lingering (batch_linger_us; off by default): a busy SKU, whose requests arrive at
 * batch_target / 4 per batch_linger_us or more, waits for batch_target of them before its next
 * call, at most batch_linger_us from its oldest waiting one's arrival, instead of sending whatever
 * one round trip gathered. Each call costs Redis a fixed part besides its requests, so fewer,
 * bigger calls leave more of the machine for the requests (and the loops sleep and wake less),
 * at the price of the wait. The rate is the SKU's own on this loop: requests per time between its
 * waves (fs__sku_wave; a SKU's first two waves never wait). A quiet SKU never waits, and no
 * request waits longer than the linger for it: a timer sends the queues whose linger ran out
 * while no I/O came. (Measured in docs/loadtest.md.)
 *
 * With a hub (several loops), a request whose SKU another loop leads is handed to that loop
 * (fs__hub_forward) after this loop's own checks (sold-out mark, admission, units ahead); the
 * leader queues it with its own (fs__lead) and its fs__finish gives it back answered
 * (fs__hub_send_back); this loop then learns from the answer as from one of its own and answers
 * the caller (fs__returned). A loop that leads no more (quiescing, closing) has the other loops
 * send its SKUs' requests themselves.
 *
 * Bounds: a request that waited longer than max_wait in the queue, or that finds max_queued
 * requests ahead of it, is answered FS_RES_OVERLOADED. A queue lives only while it has requests
 * queued or in flight, so unknown SKU names sent by a client cannot grow memory.
 *
 * Ownership: fs_stock_t owns the queues and batches; items belong to the caller. */
#include "stock.h"
#include "stock_internal.h"
#include "../common/buf.h"
#include "../common/log.h"
#include "../common/timeutil.h"
#include "flashsale/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FS__BATCH_MAX 256
/* Waves of one SKU in flight at once (from its leader loop). One: what arrives during a round trip
 * waits for it and goes as one bigger call. Two kept Redis busier but halved the batches, and the
 * fixed cost of each call made that slower: in-stock reservations went from 28-36k/s with two to 33-40k/s
 * with one, side by side (wrk -c100, 2 loops; batches of 16 became 20-22). Other SKUs still have
 * their own calls in flight. */
#define FS__MAX_WAVES 1

/* Queues and batches, once done with, are kept for reuse (up to this many queues; batches are
 * bounded by the calls in flight), and so are the arrays a call is built in: under load a wave
 * allocates nothing. */
#define FS__SPARE_QUEUES 64

typedef struct fs__queue {
    struct fs__queue *next_in_bucket, *next_dirty;
    char *launch, *sku; /* in names (launch, NUL, sku, NUL) */
    char *names;
    size_t names_cap;
    uint32_t hash;
    fs_reserve_item_t *head, *tail;
    size_t count;
    int inflight; /* fs_reserve calls sent and not answered */
    int dirty;    /* on st->dirty */
    fs__sku_t *known; /* what this loop knows of the SKU, once Redis knew it (lives on); looked
                         up before a wave, only with a linger */
} fs__queue_t;

typedef struct fs__batch {
    struct fs__batch *next_spare;
    fs_stock_t *st;
    fs__queue_t *q;
    fs_reserve_item_t *items;
    size_t n;
} fs__batch_t;

static const char *const fs__names[FS_RES__COUNT] = {
    "ok", "sold_out", "limit_exceeded", "launch_not_open", "not_found", "rate_limited",
    "overloaded", "unavailable", "error"};

const char *fs_res_code_name(fs_res_code_t c)
{
    return (unsigned)c < FS_RES__COUNT ? fs__names[c] : "error";
}

static uint32_t fs__hash(const char *a, const char *b)
{
    uint32_t h = 2166136261u;
    for (; *a; a++) h = (h ^ (uint8_t)*a) * 16777619u;
    h = (h ^ 0) * 16777619u;
    for (; *b; b++) h = (h ^ (uint8_t)*b) * 16777619u;
    return h;
}

static void fs__finish(fs_stock_t *st, fs_reserve_item_t *it, fs_res_code_t code)
{
    if (it->origin >= 0) { /* another loop's request: that loop answers it */
        it->code = code;
        st->foreign--;
        fs__hub_send_back(st, it);
        return;
    }
    fs__units_release(it);
    it->code = code;
    st->stats.outcomes[code < FS_RES__COUNT ? code : FS_RES_ERROR]++;
    it->done(it);
}

static void fs__fail_list(fs_stock_t *st, fs_reserve_item_t *it, fs_res_code_t code)
{
    while (it) {
        fs_reserve_item_t *next = it->next;
        fs__finish(st, it, code);
        it = next;
    }
}

static fs_res_code_t fs__code_of(const char *s, size_t n)
{
    for (int i = 0; i < FS_RES__COUNT; i++)
        if (strlen(fs__names[i]) == n && memcmp(fs__names[i], s, n) == 0) return (fs_res_code_t)i;
    return FS_RES_ERROR;
}

/* The one-letter codes of fs_reserve's reply (docs/redis.md); 'p' (a replay) is handled apart. */
static fs_res_code_t fs__code_of_letter(char c)
{
    switch (c) {
    case 'o': return FS_RES_OK;
    case 's': return FS_RES_SOLD_OUT;
    case 'l': return FS_RES_LIMIT_EXCEEDED;
    case 'n': return FS_RES_NOT_OPEN;
    case 'f': return FS_RES_NOT_FOUND;
    case 'r': return FS_RES_RATE_LIMITED;
    default: return FS_RES_ERROR;
    }
}

/* One rate limit of a batch, from the figures of fs_reserve's reply: its step and tolerance, and
 * how far each slot's TAT is ahead of now (ms; 0: not ahead), advanced request by request. */
typedef struct {
    int on;
    double t, tau; /* ms between requests; t * burst */
    int64_t quota, window_s;
    double ahead[FS__BATCH_MAX]; /* by slot - 1 */
} fs__limit_t;

static void fs__limit_init(fs__limit_t *l, int64_t milli, int64_t burst)
{
    l->on = milli > 0 && burst > 0;
    if (!l->on) return;
    l->t = 1000000.0 / (double)milli;
    l->tau = l->t * (double)burst;
    l->quota = burst;
    l->window_s = (int64_t)ceil(l->tau / 1000.0);
    if (l->window_s < 1) l->window_s = 1;
    memset(l->ahead, 0, sizeof l->ahead);
}

/* The GCRA step of limit l for a request in slot j (from 1) that Redis decided (refused: it
 * answered rate_limited, by this limit or the other), and the request's RateLimit figures
 * {quota, window_s, remaining, reset_s}; a quota of 0: nothing to tell (it admitted a request
 * that the other limit refused). The same arithmetic as fs_reserve's, from the TATs it returned:
 * Redis decides, this only tells the shopper where they stand. */
static void fs__limit_step(fs__limit_t *l, size_t j, int refused, int64_t out[4])
{
    double d = l->ahead[j - 1] + l->t; /* ms from now to the TAT after this request */
    out[0] = out[1] = out[2] = out[3] = 0;
    if (refused && d <= l->tau) return;
    out[0] = l->quota;
    out[1] = l->window_s;
    if (refused) {
        out[3] = (int64_t)ceil((d - l->tau) / 1000.0);
        return;
    }
    l->ahead[j - 1] = d;
    double r = floor((l->tau - d) / l->t);
    out[2] = r > 0 ? (int64_t)r : 0;
    out[3] = (int64_t)ceil(d / 1000.0);
}

/* Slots of the distinct strings of a batch, numbered from 1 in order of first appearance, as
 * fs_reserve numbers shoppers and addresses (FNV-1a, open addressing). */
typedef struct {
    uint16_t table[2 * FS__BATCH_MAX]; /* slot, 0 = empty */
    const char *s[FS__BATCH_MAX];
    size_t len[FS__BATCH_MAX];
    size_t n;
} fs__slots_t;

static size_t fs__slot_of(fs__slots_t *m, const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    const size_t mask = 2 * FS__BATCH_MAX - 1;
    for (size_t p = h & mask;; p = (p + 1) & mask) {
        size_t j = m->table[p];
        if (!j) {
            m->s[m->n] = s;
            m->len[m->n] = len;
            m->table[p] = (uint16_t)++m->n;
            return m->n;
        }
        if (m->len[j - 1] == len && memcmp(m->s[j - 1], s, len) == 0) return j;
    }
}

/* Reads the figures of fs_reserve's reply (docs/redis.md: milli1 burst1 milli2 burst2 k1 k2, then
 * k1 + k2 pairs (slot, µs ahead)) into lim, and each item's slot per limit that is on into slot
 * (0: the limit does not apply). Returns 0 if the limits are off or the figures malformed. */
static int fs__limits_read(const redisReply *figs, const fs_reserve_item_t *items, size_t n,
                           fs__limit_t lim[2], uint16_t slot[2][FS__BATCH_MAX])
{
    if (figs->type != REDIS_REPLY_ARRAY || figs->elements < 6 || n > FS__BATCH_MAX) return 0;
    int64_t v[6];
    for (int k = 0; k < 6; k++) v[k] = fs_reply_i64(figs->element[k], NULL);
    if (v[4] < 0 || v[5] < 0 || v[4] > FS__BATCH_MAX || v[5] > FS__BATCH_MAX ||
        figs->elements != 6 + 2 * (size_t)(v[4] + v[5]))
        return 0;
    fs__limit_init(&lim[0], v[0], v[1]);
    fs__limit_init(&lim[1], v[2], v[3]);
    fs__slots_t slots, *m = &slots; /* 3 KiB: on the stack, not the heap, per batch */
    for (int k = 0; k < 2; k++) {
        memset(m->table, 0, sizeof m->table);
        m->n = 0;
        size_t i = 0;
        for (const fs_reserve_item_t *it = items; it && i < n; it = it->next, i++) {
            const char *a = it->addr ? it->addr : "";
            if (!lim[k].on || (k == 1 && !a[0])) slot[k][i] = 0;
            else if (k) slot[k][i] = (uint16_t)fs__slot_of(m, a, strlen(a));
            else slot[k][i] = (uint16_t)fs__slot_of(m, it->user, it->user_len);
        }
    }
    size_t e = 6;
    for (int k = 0; k < 2; k++)
        for (int64_t p = 0; p < v[4 + k]; p++, e += 2) {
            int64_t j = fs_reply_i64(figs->element[e], NULL);
            int64_t us = fs_reply_i64(figs->element[e + 1], NULL);
            if (!lim[k].on || j < 1 || j > (int64_t)n || us < 0) return 0;
            lim[k].ahead[j - 1] = (double)us / 1000.0;
        }
    return 1;
}

/* ---- the queue map ---- */

static fs__queue_t **fs__bucket(fs_stock_t *st, uint32_t h)
{
    return &st->buckets[h % FS__NBUCKETS];
}

/* A new queue for launch, sku (hash h), not yet in the map: a spare one if there is. */
static fs__queue_t *fs__queue_new(fs_stock_t *st, const char *launch, const char *sku, uint32_t h)
{
    fs__queue_t *q = st->spare_queues;
    char *names = NULL;
    size_t cap = 0;
    if (q) {
        st->spare_queues = q->next_in_bucket;
        st->nspare_queues--;
        names = q->names;
        cap = q->names_cap;
    } else {
        q = fs_xmalloc(sizeof *q);
    }
    size_t ll = strlen(launch), sl = strlen(sku);
    if (cap < ll + sl + 2) {
        free(names);
        cap = ll + sl + 2 < 64 ? 64 : ll + sl + 2;
        names = fs_xmalloc(cap);
    }
    memset(q, 0, sizeof *q);
    q->names = names;
    q->names_cap = cap;
    q->launch = names;
    memcpy(q->launch, launch, ll + 1);
    q->sku = names + ll + 1;
    memcpy(q->sku, sku, sl + 1);
    q->hash = h;
    return q;
}

/* Done with q (out of the map): kept for reuse unless enough are. */
static void fs__queue_release(fs_stock_t *st, fs__queue_t *q)
{
    if (st->nspare_queues < FS__SPARE_QUEUES && !st->closing) {
        q->next_in_bucket = st->spare_queues;
        st->spare_queues = q;
        st->nspare_queues++;
        return;
    }
    free(q->names);
    free(q);
}

static void fs__queue_free_if_idle(fs_stock_t *st, fs__queue_t *q)
{
    if (q->count || q->inflight || q->dirty) return;
    fs__queue_t **pp = fs__bucket(st, q->hash);
    while (*pp != q) pp = &(*pp)->next_in_bucket;
    *pp = q->next_in_bucket;
    fs__queue_release(st, q);
}

static void fs__flush(uv_check_t *h);

static void fs__mark_dirty(fs_stock_t *st, fs__queue_t *q)
{
    if (q->dirty) return;
    q->dirty = 1;
    q->next_dirty = st->dirty;
    st->dirty = q;
    if (!uv_is_active((uv_handle_t *)&st->check)) uv_check_start(&st->check, fs__flush);
}

/* Whether q (nothing in flight, requests queued) waits for more before its next wave (see the top
 * of this file): fewer than the target queued, the oldest within the linger, and the SKU busy. */
static int fs__lingers(const fs_stock_t *st, const fs__queue_t *q, uint64_t now)
{
    if (!st->linger_ns || q->count >= st->batch_target || st->closing) return 0;
    if (!q->known || now - q->head->queued_ns >= st->linger_ns) return 0;
    return fs__sku_rate(q->known) * (double)st->linger_ns * 4 >= (double)st->batch_target;
}

/* While queues linger: every millisecond (libuv's timers' unit), those whose linger ran out with no
 * I/O to wake the loop are sent; stops once none waits. */
static void fs__on_linger_tick(uv_timer_t *t)
{
    fs_stock_t *st = t->data;
    int waiting = 0;
    for (int b = 0; b < FS__NBUCKETS; b++)
        for (fs__queue_t *q = st->buckets[b]; q; q = q->next_in_bucket)
            if (q->inflight < FS__MAX_WAVES && q->count > 0) fs__mark_dirty(st, q), waiting = 1;
    if (!waiting) {
        uv_timer_stop(t);
        return;
    }
    fs__flush(&st->check); /* now: a check handle would wait for the next poll's I/O */
}

/* ---- answers ---- */

/* Fills it from the replay element e {code, rid, qty, expires_ms, created_ms}. */
static fs_res_code_t fs__read_replay(fs_reserve_item_t *it, const redisReply *e)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 5) return FS_RES_ERROR;
    size_t n;
    const char *s = fs_reply_str(e->element[0], &n);
    fs_res_code_t code = fs__code_of(s, n);
    it->replayed = 1;
    if (code != FS_RES_OK) return code;
    const char *rid = fs_reply_str(e->element[1], &n);
    if (n == 0 || n > FS_RID_MAX) return FS_RES_ERROR;
    memcpy(it->rid, rid, n);
    it->rid[n] = 0;
    it->rid_len = n;
    it->qty_out = (int)fs_reply_i64(e->element[2], NULL);
    it->expires_ms = fs_reply_i64(e->element[3], NULL);
    it->created_ms = fs_reply_i64(e->element[4], NULL);
    return code;
}

/* What one answer says of the SKU's stock, marked on sku (may be NULL). sold_out for one unit
 * means none was left; ok means some was. A replayed answer is an earlier one and says nothing
 * about the stock now. Returns 1 when Redis decided it now (ok or sold_out, not a replay). */
static int fs__learn(fs__sku_t *sku, const fs_reserve_item_t *it, fs_res_code_t code)
{
    if (it->replayed || (code != FS_RES_OK && code != FS_RES_SOLD_OUT)) return 0;
    if (sku && (code == FS_RES_OK || it->qty == 1)) fs__soldout_mark(sku, code == FS_RES_SOLD_OUT);
    return 1;
}

/* Answers the items of batch b from fs_reserve's reply {codes, created_ms, expires_ms, figures,
 * available, replay...} (docs/redis.md). */
static void fs__answer_batch(fs_stock_t *st, fs__batch_t *b, const redisReply *reply)
{
    size_t ncodes;
    const char *codes = fs_reply_str(reply->element[0], &ncodes);
    int64_t created = fs_reply_i64(reply->element[1], NULL);
    int64_t expires = fs_reply_i64(reply->element[2], NULL);
    /* With rate limits on, each request's figures come from taking its GCRA steps again here. */
    fs__limit_t lim[2];
    uint16_t slot[2][FS__BATCH_MAX];
    int figs_ok = fs__limits_read(reply->element[3], b->items, b->n, lim, slot);
    /* What the batch left, before any answer goes out (an answer may queue the next request of
     * its connection at once): the batch's own units are no longer pending. (Those of another
     * loop's requests count on that loop, which releases them when the answer is back.) */
    for (fs_reserve_item_t *x = b->items; x; x = x->next)
        if (x->origin < 0) fs__units_release(x);
    int64_t left = fs_reply_i64(reply->element[4], NULL);
    /* All items of a batch are of one SKU: its entry once (left >= 0: Redis says it exists). */
    fs__sku_t *sku = left >= 0 ? fs__sku_get(st, b->q->launch, b->q->sku) : NULL;
    if (sku) fs__units_left(sku, left);
    size_t next_replay = 5;
    int decided = 0;
    fs_reserve_item_t *it = b->items;
    for (size_t i = 0; i < b->n && it; i++) {
        fs_reserve_item_t *next = it->next;
        fs_res_code_t code = FS_RES_ERROR;
        it->replayed = 0;
        if (i < ncodes && codes[i] == 'p') {
            if (next_replay < reply->elements)
                code = fs__read_replay(it, reply->element[next_replay++]);
        } else if (i < ncodes) {
            code = fs__code_of_letter(codes[i]);
            if (code == FS_RES_OK) {
                it->qty_out = it->qty;
                it->created_ms = created;
                it->expires_ms = expires;
            }
        }
        it->left_seen = left;
        it->rl_on = figs_ok;
        memset(it->rl, 0, sizeof it->rl);
        if (figs_ok && !it->replayed)
            for (int k = 0; k < 2; k++)
                if (slot[k][i])
                    fs__limit_step(&lim[k], slot[k][i], code == FS_RES_RATE_LIMITED, it->rl[k]);
        if (fs__learn(sku, it, code)) decided = 1;
        fs__finish(st, it, code);
        it = next;
    }
    /* The batch took the last unit (the launch is open, as an ok or sold_out answer shows): the
     * SKU is sold out, as if Redis had answered sold_out to a request for one unit. */
    if (left == 0 && decided) fs__soldout_mark(sku, 1);
}

static void fs__on_batch_reply(redisReply *reply, int err, void *arg)
{
    fs__batch_t *b = arg;
    fs_stock_t *st = b->st;
    fs__queue_t *q = b->q;
    q->inflight--;
    if (q->inflight < FS__MAX_WAVES && q->count > 0) fs__mark_dirty(st, q);
    if (err || reply->type != REDIS_REPLY_ARRAY || reply->elements < 5 ||
        reply->element[0]->type != REDIS_REPLY_STRING || reply->element[0]->len != b->n) {
        if (!err && fs_redis_refused(reply)) {
            err = FS_EUNAVAIL;
        } else if (!err) {
            char msg[200];
            fs_error("reserve_bad_reply", "type=%d error=%s", reply->type,
                     fs_log_quote(msg, sizeof msg, reply->type == REDIS_REPLY_ERROR ? reply->str : ""));
        }
        fs__fail_list(st, b->items, err ? FS_RES_UNAVAILABLE : FS_RES_ERROR);
    } else {
        fs__answer_batch(st, b, reply);
    }
    b->next_spare = st->spare_batches;
    st->spare_batches = b;
    fs__queue_free_if_idle(st, q);
    fs__hub_settle(st);
}

/* ---- sold out, with an Idempotency-Key ---- */

/* Appends the idempotency key of item it: fs:{L:S}:i:<user length>:<user>:<key> (docs/redis.md). */
/* Appends "fs:{launch:sku}:suffix" (without printf: every batch builds six of these). */
static void fs__sku_key(fs_buf_t *b, const char *launch, const char *sku, const char *suffix)
{
    fs_buf_append(b, "fs:{", 4);
    fs_buf_puts(b, launch);
    fs_buf_putc(b, ':');
    fs_buf_puts(b, sku);
    fs_buf_append(b, "}:", 2);
    fs_buf_puts(b, suffix);
}

static void fs__idem_key(fs_buf_t *b, const fs_reserve_item_t *it)
{
    fs__sku_key(b, it->launch, it->sku, "i:");
    fs_buf_i64(b, (int64_t)it->user_len);
    fs_buf_putc(b, ':');
    fs_buf_append(b, it->user, it->user_len);
    fs_buf_putc(b, ':');
    fs_buf_append(b, it->idem, it->idem_len);
}

/* The answer of fs_idem_sold_out: {code, rid, qty, expires_ms, created_ms, replayed}. */
static void fs__on_idem_sold_out(redisReply *reply, int err, void *arg)
{
    fs_reserve_item_t *it = arg;
    fs_stock_t *st = it->st;
    fs_res_code_t code = FS_RES_ERROR;
    if (err) {
        code = FS_RES_UNAVAILABLE;
    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 6) {
        if (fs_reply_i64(reply->element[5], NULL)) {
            code = fs__read_replay(it, reply);
        } else {
            size_t n;
            const char *s = fs_reply_str(reply->element[0], &n);
            code = fs__code_of(s, n);
            if (code == FS_RES_SOLD_OUT) st->stats.sold_out_cached++;
        }
    } else if (fs_redis_refused(reply)) {
        code = FS_RES_UNAVAILABLE;
    } else {
        char msg[200];
        fs_error("idem_sold_out_bad_reply", "type=%d error=%s", reply->type,
                 fs_log_quote(msg, sizeof msg, reply->type == REDIS_REPLY_ERROR ? reply->str : ""));
    }
    fs__finish(st, it, code);
}

/* A request with an Idempotency-Key for a SKU known to be sold out: it may be the retry of a
 * request that got a unit, so it cannot be answered from memory alone. fs_idem_sold_out reads or
 * stores its idempotency record (one SET NX GET, no SKU key): a few µs of Redis instead of a
 * place in the SKU's queue and fs_reserve. */
static void fs__idem_sold_out(fs_stock_t *st, fs_reserve_item_t *it)
{
    fs_buf_t key;
    fs_buf_init(&key);
    fs__idem_key(&key, it);
    const char *argv[] = {"FCALL", FS_FN("fs_idem_sold_out"), "1", key.data};
    size_t lens[] = {5, sizeof FS_FN("fs_idem_sold_out") - 1, 1, key.len};
    it->st = st;
    fs_redis_command(st->redis, fs__on_idem_sold_out, it, 4, argv, lens);
    fs_buf_free(&key);
}

/* ---- sending ---- */

/* Sends items (a list of n) of queue q as one fs_reserve call. */
static void fs__send_batch(fs_stock_t *st, fs__queue_t *q, fs_reserve_item_t *items, size_t n)
{
    const char *launch = q->launch, *sku = q->sku;
    /* KEYS: sku, holds, users, held, rlu, rla, then the idempotency key of each item that has
     * one; ARGV: n, then 5 per item (rid, user, qty, has_idem, addr). A batch of one-unit
     * requests without idempotency keys, the rush's usual one, goes to fs_reserve_group with a
     * group id, then the address of every item (when they share one, as a storefront's own
     * requests do) and a user per item, or '*' and 2 per item (user, addr); or, with grouped
     * holds off, to fs_reserve_plain with 3 per item (rid, user, addr). Every argument costs
     * Redis about 900 instructions, and a group is one hold record for the whole call
     * (docs/redis.md, "Held reservations"). Reservation ids are made here, not when a request is
     * queued: one that never reaches Redis needs none. */
    int plain = 1;
    for (fs_reserve_item_t *it = items; it && plain; it = it->next)
        plain = it->qty == 1 && !it->idem;
    int grouped = plain && st->grouped_holds;
    const char *shared = NULL; /* grouped: the address of every item, if they share one */
    char group[FS_RID_MAX + 1];
    size_t group_len = 0;
    if (grouped) {
        shared = items->addr ? items->addr : "";
        for (fs_reserve_item_t *it = items->next; it && shared; it = it->next)
            if (strcmp(it->addr ? it->addr : "", shared) != 0) shared = NULL;
        group_len = fs_group_new(launch, strlen(launch), sku, strlen(sku), group);
        size_t i = 1;
        for (fs_reserve_item_t *it = items; it; it = it->next, i++) {
            memcpy(it->rid, group, group_len);
            it->rid[group_len] = '.';
            it->rid_len = group_len + 1 + fs_fmt_i64(it->rid + group_len + 1, (int64_t)i);
            it->rid[it->rid_len] = 0;
        }
    } else {
        for (fs_reserve_item_t *it = items; it; it = it->next)
            it->rid_len = fs_rid_new(launch, strlen(launch), sku, strlen(sku), it->rid);
    }
    size_t maxargs = 3 + 6 + n + 3 + n * 5;
    if (st->send_cap < maxargs) { /* grows to the largest call made so far, then stays */
        st->send_cap = maxargs;
        st->send_argv = fs_xrealloc(st->send_argv, maxargs * sizeof *st->send_argv);
        st->send_lens = fs_xrealloc(st->send_lens, maxargs * sizeof *st->send_lens);
    }
    if (st->send_kcap < 6 + n) {
        st->send_kcap = 6 + n;
        st->send_offs = fs_xrealloc(st->send_offs, (6 + n) * sizeof *st->send_offs);
        st->send_klens = fs_xrealloc(st->send_klens, (6 + n) * sizeof *st->send_klens);
    }
    const char **argv = st->send_argv;
    size_t *lens = st->send_lens, *offs = st->send_offs, *klens = st->send_klens, nkeys = 0;
    fs_buf_t *keybuf = &st->send_keys;
    fs_buf_reset(keybuf);
    /* Keys are written into one buffer first and pointed at afterwards (it may move while growing). */
    static const char *const suffixes[] = {"sku", "holds", "users", "held", "rlu", "rla"};
    for (int k = 0; k < 6; k++) {
        offs[nkeys] = keybuf->len;
        fs__sku_key(keybuf, launch, sku, suffixes[k]);
        klens[nkeys] = keybuf->len - offs[nkeys];
        nkeys++;
    }
    for (fs_reserve_item_t *it = items; it; it = it->next) {
        if (!it->idem) continue;
        offs[nkeys] = keybuf->len;
        fs__idem_key(keybuf, it);
        klens[nkeys] = keybuf->len - offs[nkeys];
        nkeys++;
    }
    char numkeys[FS_I64_MAX_LEN], nstr[FS_I64_MAX_LEN], qty[FS__BATCH_MAX][FS_I64_MAX_LEN];
    size_t a = 0;
    argv[a] = "FCALL", lens[a++] = 5;
    if (grouped)
        argv[a] = FS_FN("fs_reserve_group"), lens[a++] = sizeof FS_FN("fs_reserve_group") - 1;
    else if (plain)
        argv[a] = FS_FN("fs_reserve_plain"), lens[a++] = sizeof FS_FN("fs_reserve_plain") - 1;
    else
        argv[a] = FS_FN("fs_reserve"), lens[a++] = sizeof FS_FN("fs_reserve") - 1;
    lens[a] = fs_fmt_i64(numkeys, (int64_t)nkeys), argv[a++] = numkeys;
    for (size_t k = 0; k < nkeys; k++) argv[a] = keybuf->data + offs[k], lens[a++] = klens[k];
    lens[a] = fs_fmt_i64(nstr, (int64_t)n), argv[a++] = nstr;
    if (grouped) {
        argv[a] = group, lens[a++] = group_len;
        argv[a] = shared ? shared : "*", lens[a++] = shared ? strlen(shared) : 1;
    }
    size_t i = 0;
    for (fs_reserve_item_t *it = items; it; it = it->next, i++) {
        if (!grouped) argv[a] = it->rid, lens[a++] = it->rid_len;
        argv[a] = it->user, lens[a++] = it->user_len;
        if (!plain) {
            lens[a] = fs_fmt_i64(qty[i], it->qty), argv[a++] = qty[i];
            argv[a] = it->idem ? "1" : "0", lens[a++] = 1;
        }
        if (!shared)
            argv[a] = it->addr ? it->addr : "", lens[a++] = it->addr ? strlen(it->addr) : 0;
    }
    fs__batch_t *b = st->spare_batches;
    if (b) st->spare_batches = b->next_spare;
    else b = fs_xmalloc(sizeof *b);
    b->st = st;
    b->q = q;
    b->items = items;
    b->n = n;
    q->inflight++;
    st->stats.batches++;
    st->stats.batched_items += n;
    /* The command is formatted into the Redis client's own buffer before this returns (a reply
     * comes later, or, with the connection down, at once, sending nothing): the arrays are free
     * for the next call. */
    fs_redis_command(st->redis, fs__on_batch_reply, b, (int)a, argv, lens);
}

/* st's Redis connection is down: hands request `it` to a loop whose connection is up, its SKU's
 * leader if that is one, unless it was moved so before (hub.c); 1 if one took it. */
static int fs__reroute(fs_stock_t *st, fs_reserve_item_t *it)
{
    if (!st->hub || it->rerouted || st->closing) return 0;
    it->rerouted = 1; /* before the hand-over: the other loop may take it at once */
    int leader = fs__hub_leader(st->hub, fs__hash(it->launch, it->sku));
    if (!fs__hub_forward_any(st, leader, it)) return 0;
    st->stats.rerouted++;
    return 1;
}

/* Request it of a wave that cannot go: st's Redis connection went down (it is reconnecting) and
 * nothing of the wave reached Redis. Another loop's goes back to it, to send on its own
 * connection; st's own to a loop whose connection is up; what cannot is answered. */
static void fs__reroute_unsent(fs_stock_t *st, fs_reserve_item_t *it)
{
    if (it->origin >= 0 && !it->rerouted) {
        it->rerouted = 1;
        it->retry = 1;
        st->foreign--;
        st->stats.rerouted++;
        fs__hub_send_back(st, it);
    } else if (it->origin >= 0 || !fs__reroute(st, it)) {
        fs__finish(st, it, FS_RES_UNAVAILABLE);
    }
}

/* Sends the next wave of queue q: everything queued, in calls of at most FS__BATCH_MAX. Requests
 * that waited too long are answered overloaded instead, and with st's connection down the rest go
 * another way (fs__reroute_unsent). */
static void fs__send_wave(fs_stock_t *st, fs__queue_t *q)
{
    uint64_t now = fs_mono_ns();
    int down = st->hub && !fs_redis_ready(st->redis); /* then other loops send it */
    if (q->known && !down) fs__sku_wave(q->known, q->count, now); /* its rate, for fs__lingers */
    fs_reserve_item_t *it = q->head, *send = NULL, **tail = &send;
    q->head = q->tail = NULL;
    q->count = 0;
    /* Hold a reference while answering: callbacks may run synchronously. */
    q->inflight++;
    while (it) {
        fs_reserve_item_t *next = it->next;
        if (now - it->queued_ns > st->max_wait_ns) {
            fs__finish(st, it, FS_RES_OVERLOADED);
        } else if (down) {
            fs__reroute_unsent(st, it);
        } else {
            *tail = it;
            tail = &it->next;
        }
        it = next;
    }
    *tail = NULL;
    while (send) {
        fs_reserve_item_t *first = send, *last = send;
        size_t n = 1;
        while (last->next && n < FS__BATCH_MAX) last = last->next, n++;
        send = last->next;
        last->next = NULL;
        fs__send_batch(st, q, first, n);
    }
    q->inflight--;
    /* Answers that came back synchronously (Redis unavailable) may have queued new requests. */
    if (q->inflight < FS__MAX_WAVES && q->count > 0) fs__mark_dirty(st, q);
}

static void fs__flush(uv_check_t *h)
{
    fs_stock_t *st = h->data;
    uv_check_stop(h);
    uint64_t now = st->linger_ns ? fs_mono_ns() : 0;
    while (st->dirty) {
        fs__queue_t *q = st->dirty;
        st->dirty = q->next_dirty;
        q->dirty = 0;
        if (q->inflight < FS__MAX_WAVES && q->count > 0) {
            if (st->linger_ns && !q->known) q->known = fs__sku_find(st, q->launch, q->sku);
            if (fs__lingers(st, q, now)) {
                if (!uv_is_active((uv_handle_t *)&st->linger_timer))
                    uv_timer_start(&st->linger_timer, fs__on_linger_tick, 1, 1);
                continue; /* its next request marks it again, or the timer */
            }
            fs__send_wave(st, q);
        }
        fs__queue_free_if_idle(st, q);
    }
    if (st->quiesce_cb && st->foreign == 0) { /* fs_stock_quiesce's wait is over */
        void (*cb)(void *) = st->quiesce_cb;
        st->quiesce_cb = NULL;
        cb(st->quiesce_arg); /* may close Redis and st: nothing of st after this */
        return;
    }
    fs__hub_settle(st);
}

/* Queues it (hash h of its SKU) on this loop, to go to Redis with the SKU's next wave. */
static void fs__enqueue(fs_stock_t *st, fs_reserve_item_t *it, uint32_t h)
{
    fs__queue_t **bucket = fs__bucket(st, h), *q;
    for (q = *bucket; q; q = q->next_in_bucket)
        if (q->hash == h && strcmp(q->launch, it->launch) == 0 && strcmp(q->sku, it->sku) == 0) break;
    if (!q) {
        q = fs__queue_new(st, it->launch, it->sku, h);
        q->next_in_bucket = *bucket;
        *bucket = q;
    }
    if (q->count >= st->max_queued) {
        fs__finish(st, it, FS_RES_OVERLOADED);
        return;
    }
    if (q->tail) q->tail->next = it;
    else q->head = it;
    q->tail = it;
    q->count++;
    if (q->inflight < FS__MAX_WAVES) fs__mark_dirty(st, q);
}

void fs__lead(fs_stock_t *st, fs_reserve_item_t *list)
{
    while (list) {
        fs_reserve_item_t *it = list;
        list = it->next;
        st->foreign++;
        it->next = NULL;
        fs__enqueue(st, it, fs__hash(it->launch, it->sku));
    }
}

void fs__returned(fs_stock_t *st, fs_reserve_item_t *it)
{
    it->origin = -1;
    st->forwarded_out--;
    if (it->retry) { /* handed back unsent: its loop lost its Redis connection */
        it->retry = 0;
        if (!st->closing && fs_redis_ready(st->redis)) {
            fs__enqueue(st, it, fs__hash(it->launch, it->sku));
            return;
        }
        fs__finish(st, it, FS_RES_UNAVAILABLE);
        return;
    }
    /* What this loop knows of the SKU follows the leader's answers too, as it would its own. */
    if (it->left_seen >= 0) {
        fs__sku_t *sku = fs__sku_get(st, it->launch, it->sku);
        fs__units_left(sku, it->left_seen);
        if (fs__learn(sku, it, it->code) && it->left_seen == 0) fs__soldout_mark(sku, 1);
    }
    fs__finish(st, it, it->code);
}

void fs__hub_settle(fs_stock_t *st)
{
    /* A quiesce callback closes Redis: it runs from the check handle (fs__flush), never from
     * inside a Redis reply's callback. */
    if (st->quiesce_cb && st->foreign == 0 && !uv_is_active((uv_handle_t *)&st->check))
        uv_check_start(&st->check, fs__flush);
    if (st->closing && st->hub) fs__hub_close(st, fs__stock_on_closed);
}

void fs_stock_quiesce(fs_stock_t *st, void (*cb)(void *arg), void *arg)
{
    if (st->hub) fs__lead(st, fs__hub_stop_leading(st));
    if (st->foreign == 0) {
        cb(arg);
        return;
    }
    st->quiesce_cb = cb;
    st->quiesce_arg = arg;
}

void fs_stock_reserve(fs_stock_t *st, fs_reserve_item_t *it)
{
    it->next = NULL;
    it->replayed = 0;
    it->rl_on = 0;
    it->units = NULL;
    it->origin = -1;
    it->rerouted = 0;
    it->retry = 0;
    it->left_seen = -1;
    /* With several loops, one whose Redis connection is down (reconnecting) still answers what
     * it knows without Redis and hands the rest to a loop whose connection is up (fs__reroute). */
    int ready = fs_redis_ready(st->redis);
    if (!ready && !st->hub) {
        fs__finish(st, it, FS_RES_UNAVAILABLE);
        return;
    }
    fs__sku_t *sku = fs__sku_find(st, it->launch, it->sku); /* NULL until Redis knew it */
    if (fs__soldout_hit(st, sku)) {
        if (it->idem && ready) {
            fs__idem_sold_out(st, it);
            return;
        }
        if (it->idem) { /* a replay or not: fs_reserve, on another loop's connection, decides */
            it->queued_ns = fs_mono_ns();
            if (!fs__reroute(st, it)) fs__finish(st, it, FS_RES_UNAVAILABLE);
            return;
        }
        st->stats.sold_out_cached++;
        fs__finish(st, it, FS_RES_SOLD_OUT);
        return;
    }
    if (!fs__admission_take(st, sku)) {
        fs__finish(st, it, FS_RES_OVERLOADED);
        return;
    }
    /* Requests with an Idempotency-Key may be replays, which take no unit: Redis answers them. */
    if (!it->idem && fs__units_claim(st, sku, it)) {
        st->stats.sold_out_cached++;
        fs__finish(st, it, FS_RES_SOLD_OUT);
        return;
    }
    it->queued_ns = fs_mono_ns(); /* the wait for the leader counts in the queue's bound */
    uint32_t h = fs__hash(it->launch, it->sku);
    if (st->hub) {
        int leader = fs__hub_leader(st->hub, h);
        if (leader != st->index && fs__hub_forward(st, leader, it)) return;
    }
    if (!ready) {
        if (!fs__reroute(st, it)) fs__finish(st, it, FS_RES_UNAVAILABLE);
        return;
    }
    fs__enqueue(st, it, h);
}

void fs__stock_queues_init(fs_stock_t *st)
{
    uv_check_init(st->loop, &st->check);
    st->check.data = st;
    uv_timer_init(st->loop, &st->linger_timer);
    st->linger_timer.data = st;
}

void fs__stock_queues_close(fs_stock_t *st)
{
    /* Requests still queued (not sent) are answered now; those in flight were answered when the
     * Redis client closed. */
    for (int b = 0; b < FS__NBUCKETS; b++) {
        fs__queue_t *q = st->buckets[b];
        while (q) {
            fs__queue_t *next = q->next_in_bucket;
            fs_reserve_item_t *it = q->head;
            q->head = q->tail = NULL;
            q->count = 0;
            fs__fail_list(st, it, FS_RES_UNAVAILABLE);
            free(q->names);
            free(q);
            q = next;
        }
        st->buckets[b] = NULL;
    }
    st->dirty = NULL;
}

void fs__stock_queues_free(fs_stock_t *st)
{
    while (st->spare_queues) {
        fs__queue_t *q = st->spare_queues;
        st->spare_queues = q->next_in_bucket;
        free(q->names);
        free(q);
    }
    while (st->spare_batches) {
        fs__batch_t *b = st->spare_batches;
        st->spare_batches = b->next_spare;
        free(b);
    }
    free(st->send_argv);
    free(st->send_lens);
    free(st->send_offs);
    free(st->send_klens);
    fs_buf_free(&st->send_keys);
}
