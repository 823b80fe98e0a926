/* Direct stock calls, launch views and the expiry sweeper (see stock.h). */
#include "stock.h"
#include "stock_internal.h"
#include "../common/buf.h"
#include "../common/log.h"
#include "../common/timeutil.h"
#include "../redis/redis_sub.h"
#include "flashsale/error.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FS__SWEEP_MAX "200"
#define FS__SKU_LIST_WHOLE_NS 60000000000u /* the sweeper's whole SKU list at least this often */

/* Builds and sends "FCALL fn numkeys keys... args..." where keys and args are NUL-terminated
 * strings, except that args may carry explicit lengths (arglens[i] == (size_t)-1 means strlen). */
static void fs__fcall(fs_stock_t *st, const char *fn, int nkeys, const char **keys, int nargs,
                      const char **args, const size_t *arglens, fs_redis_cb cb, void *arg)
{
    const char *argv[32];
    size_t lens[32];
    char nk[8];
    int a = 0;
    fs_assert(3 + nkeys + nargs <= 32);
    argv[a] = "FCALL", lens[a++] = 5;
    argv[a] = fn, lens[a++] = strlen(fn);
    lens[a] = (size_t)snprintf(nk, sizeof nk, "%d", nkeys), argv[a++] = nk;
    for (int i = 0; i < nkeys; i++) argv[a] = keys[i], lens[a++] = strlen(keys[i]);
    for (int i = 0; i < nargs; i++) {
        argv[a] = args[i];
        lens[a++] = arglens && arglens[i] != (size_t)-1 ? arglens[i] : strlen(args[i]);
    }
    fs_stock_command(st, cb, arg, a, argv, lens);
}

/* Key of SKU (launch, sku) with a suffix, into a buffer the caller frees. */
static char *fs__key(const char *launch, const char *sku, const char *suffix, const char *rid)
{
    fs_buf_t b;
    fs_buf_init(&b);
    fs_buf_printf(&b, "fs:{%s:%s}:%s%s", launch, sku, suffix, rid ? rid : "");
    return b.data;
}

void fs_stock_confirm(fs_stock_t *st, const char *launch, const char *sku, const char *rid,
                      const char *user, size_t user_len, const char *payment_ref, size_t pref_len,
                      fs_redis_cb cb, void *arg)
{
    char *k[6] = {fs__key(launch, sku, "sku", NULL), fs__key(launch, sku, "holds", NULL),
                  fs__key(launch, sku, "users", NULL), fs__key(launch, sku, "held", NULL),
                  fs__key(launch, sku, "r:", rid), fs__key(launch, sku, "orders", NULL)};
    char oid[32];
    fs_order_id_new(oid);
    const char *args[] = {rid, user, oid, payment_ref ? payment_ref : ""};
    size_t lens[] = {(size_t)-1, user_len, (size_t)-1, payment_ref ? pref_len : 0};
    fs__fcall(st, FS_FN("fs_confirm"), 6, (const char **)k, 4, args, lens, cb, arg);
    for (int i = 0; i < 6; i++) free(k[i]);
}

void fs_stock_cancel(fs_stock_t *st, const char *launch, const char *sku, const char *rid,
                     const char *user, size_t user_len, fs_redis_cb cb, void *arg)
{
    char *k[5] = {fs__key(launch, sku, "sku", NULL), fs__key(launch, sku, "holds", NULL),
                  fs__key(launch, sku, "users", NULL), fs__key(launch, sku, "held", NULL),
                  fs__key(launch, sku, "r:", rid)};
    const char *args[] = {rid, user};
    size_t lens[] = {(size_t)-1, user_len};
    fs__fcall(st, FS_FN("fs_cancel"), 5, (const char **)k, 2, args, lens, cb, arg);
    for (int i = 0; i < 5; i++) free(k[i]);
}

void fs_stock_get_reservation(fs_stock_t *st, const char *launch, const char *sku, const char *rid,
                              const char *user, size_t user_len, fs_redis_cb cb, void *arg)
{
    char *k[2] = {fs__key(launch, sku, "held", NULL), fs__key(launch, sku, "r:", rid)};
    const char *args[] = {rid, user};
    size_t lens[] = {(size_t)-1, user_len};
    fs__fcall(st, FS_FN("fs_get_reservation"), 2, (const char **)k, 2, args, lens, cb, arg);
    free(k[0]);
    free(k[1]);
}

void fs_stock_restock(fs_stock_t *st, const char *launch, const char *sku, int64_t delta,
                      fs_redis_cb cb, void *arg)
{
    char *k = fs__key(launch, sku, "sku", NULL);
    char d[24];
    snprintf(d, sizeof d, "%lld", (long long)delta);
    const char *args[] = {d};
    fs__fcall(st, FS_FN("fs_restock"), 1, (const char **)&k, 1, args, NULL, cb, arg);
    free(k);
}

static void fs__launch_keys(const char *launch, char k1[160], char k2[160])
{
    snprintf(k1, 160, "fs:launch:{%s}", launch);
    snprintf(k2, 160, "fs:launch:{%s}:skus", launch);
}

void fs_stock_launch_get(fs_stock_t *st, const char *launch, fs_redis_cb cb, void *arg)
{
    char k1[160], k2[160];
    fs__launch_keys(launch, k1, k2);
    const char *keys[] = {k1, k2};
    fs__fcall(st, FS_FN("fs_launch_get"), 2, keys, 0, NULL, NULL, cb, arg);
}

void fs_stock_launch_state(fs_stock_t *st, const char *launch, const char *action, fs_redis_cb cb,
                           void *arg)
{
    char k1[160], k2[160];
    fs__launch_keys(launch, k1, k2);
    const char *keys[] = {k1, k2};
    const char *args[] = {action};
    fs__fcall(st, FS_FN("fs_launch_state"), 2, keys, 1, args, NULL, cb, arg);
}

void fs_stock_launch_rate_limit(fs_stock_t *st, const char *launch, const int64_t v[4],
                                fs_redis_cb cb, void *arg)
{
    char k1[160], k2[160], a[4][24];
    fs__launch_keys(launch, k1, k2);
    const char *keys[] = {k1, k2};
    const char *args[4];
    for (int i = 0; i < 4; i++) {
        snprintf(a[i], sizeof a[i], "%lld", (long long)v[i]);
        args[i] = a[i];
    }
    fs__fcall(st, FS_FN("fs_launch_rate_limit"), 2, keys, 4, args, NULL, cb, arg);
}

void fs_stock_launch_put(fs_stock_t *st, const fs_launch_def_t *def, fs_redis_cb cb, void *arg)
{
    char k1[160], k2[160];
    fs__launch_keys(def->launch, k1, k2);
    size_t argc = 3 + 3 + 6 + def->nskus * 4;
    const char **argv = fs_xmalloc(argc * sizeof *argv);
    size_t *lens = fs_xmalloc(argc * sizeof *lens);
    char *nums = fs_xmalloc((4 + def->nskus * 3) * 24);
    size_t a = 0, ni = 0;
#define FS__NUM(v)                                                                    \
    do {                                                                              \
        char *p = nums + 24 * ni++;                                                   \
        lens[a] = (size_t)snprintf(p, 24, "%lld", (long long)(v));                   \
        argv[a++] = p;                                                                \
    } while (0)
#define FS__STR(s) (argv[a] = (s), lens[a++] = strlen(s))
    FS__STR("FCALL");
    FS__STR(FS_FN("fs_launch_put"));
    FS__STR("3");
    FS__STR(k1);
    FS__STR(k2);
    FS__STR("fs:launches");
    FS__STR(def->launch);
    FS__STR(def->name);
    FS__NUM(def->hold_seconds);
    FS__NUM(def->starts_at_ms);
    FS__NUM(def->ends_at_ms);
    FS__NUM(def->nskus);
    for (size_t i = 0; i < def->nskus; i++) {
        FS__STR(def->skus[i].sku);
        FS__NUM(def->skus[i].stock);
        FS__NUM(def->skus[i].per_user_limit);
        FS__NUM(def->skus[i].price_cents);
    }
#undef FS__NUM
#undef FS__STR
    fs_stock_command(st, cb, arg, (int)a, argv, lens);
    free(argv);
    free(lens);
    free(nums);
}

int fs_launch_view_parse(const redisReply *r, fs_launch_view_t *v)
{
    memset(v, 0, sizeof *v);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 10) return FS_EPROTO;
    /* "ok", created, launch, name, state, hold_seconds, starts_at_ms, ends_at_ms, now_ms, n, ... */
    v->launch = fs_reply_str(r->element[2], &v->launch_len);
    v->name = fs_reply_str(r->element[3], &v->name_len);
    v->state = fs_reply_str(r->element[4], &v->state_len);
    int ok = 1, k;
    v->hold_seconds = fs_reply_i64(r->element[5], &k), ok &= k;
    v->starts_at_ms = fs_reply_i64(r->element[6], &k), ok &= k;
    v->ends_at_ms = fs_reply_i64(r->element[7], &k), ok &= k;
    v->now_ms = fs_reply_i64(r->element[8], &k), ok &= k;
    int64_t n = fs_reply_i64(r->element[9], &k);
    ok &= k;
    if (!ok || n < 0 || r->elements != 10 + (size_t)n * 7 + 4) return FS_EPROTO;
    for (int i = 0; i < 4; i++) v->rl[i] = fs_reply_i64(r->element[10 + (size_t)n * 7 + i], NULL);
    v->nskus = (size_t)n;
    v->skus = fs_xcalloc(v->nskus ? v->nskus : 1, sizeof *v->skus);
    for (size_t i = 0; i < v->nskus; i++) {
        redisReply **e = r->element + 10 + i * 7;
        fs_sku_view_t *s = &v->skus[i];
        s->sku = fs_reply_str(e[0], &s->sku_len);
        s->total = fs_reply_i64(e[1], NULL);
        s->available = fs_reply_i64(e[2], NULL);
        s->held = fs_reply_i64(e[3], NULL);
        s->sold = fs_reply_i64(e[4], NULL);
        s->per_user_limit = fs_reply_i64(e[5], NULL);
        s->price_cents = fs_reply_i64(e[6], NULL);
    }
    return FS_OK;
}

void fs_launch_view_free(fs_launch_view_t *v)
{
    free(v->skus);
    v->skus = NULL;
}

/* ---- sweeper ---- */

/* One SKU the sweeper knows of. fs_expire says how long nothing more of the SKU can come due
 * (the time to its earliest hold, at most its launch's hold time: a hold made meanwhile is due no
 * sooner); the sweeper calls it again only then, or as soon as the SKU list shows a shorter hold
 * time than that wait was worked out with. Between launches a SKU with nothing held then costs
 * Redis a call per hold time per server, not one per tick (with 100 SKUs and the default 250 ms,
 * 400 calls a second, about 20 us of Redis each, all at once at each tick). */
typedef struct fs__sweep_sku {
    fs_stock_t *st;
    char *launch, *sku;
    int64_t hold_ms;       /* the launch's hold time, as the last SKU list gave it */
    int64_t waited_hold_ms; /* hold_ms when due_ns was worked out */
    uint64_t due_ns;       /* sweep it at the first tick from then; 0: at the next one */
} fs__sweep_sku_t;

static void fs__sweep_skus(fs_stock_t *st);

static void fs__on_expired(redisReply *reply, int err, void *arg)
{
    fs__sweep_sku_t *k = arg;
    fs_stock_t *st = k->st;
    st->sweeping--;
    k->due_ns = 0; /* unless the reply says otherwise: again at the next tick */
    if (!err && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER &&
        reply->element[1]->type == REDIS_REPLY_INTEGER) {
        long long n = reply->element[0]->integer, wait_ms = reply->element[1]->integer;
        if (n > 0) fs_debug("holds_expired", "count=%lld", n);
        if (n >= atoi(FS__SWEEP_MAX)) st->sweep_again = 1;
        if (wait_ms > 0) {
            k->due_ns = fs_mono_ns() + (uint64_t)wait_ms * 1000000u;
            k->waited_hold_ms = k->hold_ms;
        }
    } else if (!err && reply->type == REDIS_REPLY_ERROR) {
        char msg[200];
        fs_warn("sweep_failed", "error=%s", fs_log_quote(msg, sizeof msg, reply->str));
    } else if (!err) {
        fs_warn("sweep_failed", "error=\"unexpected reply to fs_expire\"");
    }
    /* A SKU gave the most one call expires: more may be due (thousands of holds made in the
     * first seconds of a launch expire together). Sweep again at once rather than at the next
     * tick, until every call gives fewer: held units must be back within a second of expiring. */
    if (!err && !st->closing && st->sweeping == 0 && st->sweep_again && fs_redis_ready(st->redis)) {
        st->sweep_again = 0;
        fs__sweep_skus(st);
    }
}

static void fs__free_sku_list(fs__sweep_sku_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i].launch), free(v[i].sku);
    free(v);
}

/* The entry of old (n of them) for launch l, SKU s (the new list's entry i), or NULL. The list
 * keeps its order from one fetch to the next, shifted where launches or SKUs came: the entry *off
 * places from i is tried first, and a search (for a SKU that moved or is new) updates *off, so a
 * list of thousands of SKUs (every launch ever made) costs a lookup per entry, not a search. */
static fs__sweep_sku_t *fs__sweep_find(fs__sweep_sku_t *old, size_t n, size_t i, ptrdiff_t *off,
                                       const char *l, const char *s)
{
    ptrdiff_t at = (ptrdiff_t)i + *off;
    if (at >= 0 && (size_t)at < n && strcmp(old[at].sku, s) == 0 && strcmp(old[at].launch, l) == 0)
        return &old[at];
    for (size_t j = 0; j < n; j++) {
        if (strcmp(old[j].sku, s) == 0 && strcmp(old[j].launch, l) == 0) {
            *off = (ptrdiff_t)j - (ptrdiff_t)i;
            return &old[j];
        }
    }
    return NULL;
}

static void fs__on_sku_list(redisReply *reply, int err, void *arg)
{
    fs_stock_t *st = arg;
    st->sweeping--;
    if (err || reply->type != REDIS_REPLY_ARRAY || reply->elements % 3 != 1 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[0]->len >= sizeof st->skus_ver) {
        char msg[200];
        if (!err)
            fs_warn("sweep_failed", "error=%s",
                    fs_log_quote(msg, sizeof msg, reply->type == REDIS_REPLY_ERROR
                                                      ? reply->str
                                                      : "unexpected reply to fs_sku_list"));
        return;
    }
    st->skus_fetched_ns = fs_mono_ns();
    const redisReply *ver = reply->element[0];
    if (reply->elements == 1 && strcmp(ver->str, st->skus_ver) == 0) { /* unchanged */
        fs__sweep_skus(st);
        return;
    }
    memcpy(st->skus_ver, ver->str, ver->len + 1);
    st->skus_whole_ns = st->skus_fetched_ns;
    redisReply **e = reply->element + 1;
    size_t n = reply->elements / 3;
    ptrdiff_t off = 0;
    fs__sweep_sku_t *v = fs_xcalloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *s = fs_reply_str(e[3 * i], &len);
        v[i].st = st;
        v[i].launch = fs_xstrndup(s, len);
        s = fs_reply_str(e[3 * i + 1], &len);
        v[i].sku = fs_xstrndup(s, len);
        v[i].hold_ms = fs_reply_i64(e[3 * i + 2], NULL);
        fs__sweep_sku_t *was = fs__sweep_find(st->sweep_skus, st->sweep_nskus, i, &off,
                                              v[i].launch, v[i].sku);
        /* A SKU new to the list is swept at once; one whose hold time fell may have holds due
         * sooner than it was told. */
        if (was && v[i].hold_ms >= was->waited_hold_ms) {
            v[i].due_ns = was->due_ns;
            v[i].waited_hold_ms = was->waited_hold_ms;
        }
    }
    fs__free_sku_list(st->sweep_skus, st->sweep_nskus);
    st->sweep_skus = v;
    st->sweep_nskus = n;
    fs__sweep_skus(st);
}

/* Calls fs_expire for each SKU whose wait has passed. */
static void fs__sweep_skus(fs_stock_t *st)
{
    uint64_t now = fs_mono_ns();
    for (size_t i = 0; i < st->sweep_nskus; i++) {
        fs__sweep_sku_t *e = &st->sweep_skus[i];
        if (e->due_ns > now) continue;
        const char *l = e->launch, *s = e->sku;
        char *k[4] = {fs__key(l, s, "sku", NULL), fs__key(l, s, "holds", NULL),
                      fs__key(l, s, "users", NULL), fs__key(l, s, "held", NULL)};
        const char *args[] = {FS__SWEEP_MAX};
        st->sweeping++;
        fs__fcall(st, FS_FN("fs_expire"), 4, (const char **)k, 1, args, NULL, fs__on_expired, e);
        for (int j = 0; j < 4; j++) free(k[j]);
    }
}

static void fs__on_sweep_tick(uv_timer_t *t)
{
    fs_stock_t *st = t->data;
    if (st->sweeping > 0 || !fs_redis_ready(st->redis)) return;
    st->sweep_again = 0;
    uint64_t now = fs_mono_ns();
    if (!st->skus_fetched_ns || now - st->skus_fetched_ns > 1000000000u) {
        /* With the version it has, the answer is only that version unless the list changed. The
         * whole list at least once a minute all the same: servers of the previous version change
         * launches without raising the version. */
        const char *keys[] = {"fs:launches"}, *args[] = {st->skus_ver};
        int known = st->skus_ver[0] && now - st->skus_whole_ns < FS__SKU_LIST_WHOLE_NS;
        st->sweeping++;
        fs__fcall(st, FS_FN("fs_sku_list"), 1, keys, known, args, NULL, fs__on_sku_list, st);
    } else {
        fs__sweep_skus(st);
    }
}

void fs_stock_start_sweeper(fs_stock_t *st, int interval_ms)
{
    uv_timer_start(&st->sweep_timer, fs__on_sweep_tick, (uint64_t)interval_ms, (uint64_t)interval_ms);
}

/* ---- lifecycle ---- */

fs_stock_t *fs_stock_new(uv_loop_t *loop, fs_redis_t *redis, const fs_stock_opts_t *o)
{
    fs_stock_t *st = fs_xcalloc(1, sizeof *st);
    st->loop = loop;
    st->redis = redis;
    st->soldout_recheck_ns = (uint64_t)o->soldout_recheck_ms * 1000000u;
    st->max_wait_ns = (uint64_t)o->queue_max_wait_ms * 1000000u;
    st->max_queued = (size_t)o->queue_max_len;
    st->linger_ns = (uint64_t)o->batch_linger_us * 1000u;
    st->batch_target = (size_t)o->batch_target;
    st->admission_per_sec = o->admission_per_sec;
    st->grouped_holds = o->grouped_holds;
    st->hub = o->hub;
    st->index = o->index;
    if (st->hub) fs__hub_attach(st);
    st->sub = fs_redis_sub_new(loop, o->redis, "fs:stock", fs__soldout_on_message, st);
    fs__stock_queues_init(st);
    uv_timer_init(loop, &st->sweep_timer);
    st->sweep_timer.data = st;
    return st;
}

void fs_stock_redis_ready(fs_stock_t *st, int ready)
{
    if (st->hub) fs__hub_redis_ready(st, ready);
}

void fs__stock_on_closed(uv_handle_t *h)
{
    fs_stock_t *st = h->data;
    if (--st->open_handles == 0) {
        fs__free_sku_list(st->sweep_skus, st->sweep_nskus);
        fs__stock_queues_free(st);
        fs__soldout_free(st);
        free(st);
    }
}

void fs_stock_close(fs_stock_t *st)
{
    st->closing = 1;
    st->quiesce_cb = NULL;
    st->open_handles = st->hub ? 4 : 3;
    if (st->hub) { /* other loops' requests not queued yet: answered on their loop */
        fs_reserve_item_t *in = fs__hub_stop_leading(st);
        while (in) {
            fs_reserve_item_t *next = in->next;
            in->code = FS_RES_UNAVAILABLE;
            fs__hub_send_back(st, in);
            in = next;
        }
    }
    fs__stock_queues_close(st);
    fs_redis_sub_close(st->sub);
    uv_close((uv_handle_t *)&st->check, fs__stock_on_closed);
    uv_close((uv_handle_t *)&st->sweep_timer, fs__stock_on_closed);
    uv_close((uv_handle_t *)&st->linger_timer, fs__stock_on_closed);
    /* The mailbox stays open while this loop's own requests are out at other loops. */
    if (st->hub) fs__hub_close(st, fs__stock_on_closed);
}

fs_stock_stats_t fs_stock_stats(const fs_stock_t *st)
{
    fs_stock_stats_t s = st->stats;
    s.sub_lost = fs_redis_sub_lost(st->sub);
    return s;
}

fs_redis_t *fs_stock_redis(fs_stock_t *st)
{
    return st->redis;
}

void fs_stock_command(fs_stock_t *st, fs_redis_cb cb, void *arg, int argc, const char **argv,
                      const size_t *lens)
{
    if (st->hub && !st->closing && !fs_redis_ready(st->redis) &&
        fs__hub_command(st, cb, arg, argc, argv, lens))
        return;
    fs_redis_command(st->redis, cb, arg, argc, argv, lens);
}
