/* Per-SKU state of one loop: the sold-out cache and the admission cap.
 *
 * The sold-out cache: SKUs known to have no unit left, answered without Redis.
 *
 * A SKU is marked when Redis answers sold_out to a request for one unit (then available was 0,
 * and nothing in the rest of that batch can raise it), or when a batch of an open launch leaves
 * 0 units. The mark is dropped when a message on the
 * fs:stock channel says units of that SKU came back (cancel, expiry, restock, state change), when
 * the subscription restarts (messages may have been lost), and, as a safety net, one request per
 * recheck interval still goes to Redis and refreshes or drops the mark with its answer.
 *
 * The admission cap: a token bucket per SKU lets at most `admission` reservation requests per
 * second through to the queue (and so to Redis); the excess is answered "overloaded".
 *
 * Units ahead: each fs_reserve answer says how many units were left after its batch. Requests
 * queued or in flight on this loop count their units as pending; a request whose units would
 * take the pending total past what is left is answered sold_out at once, without queueing (the
 * issue's bounded queue: "when queued units already exceed what remains, the excess is answered
 * sold_out immediately"). Other loops and servers only lower the true figure, so the estimate
 * errs towards asking Redis. Units coming back (fs:stock) make it unknown again, and so does the
 * re-check interval, like the sold-out mark: pub/sub is best effort.
 *
 * Entries exist only for SKUs that Redis said exist, so the table is bounded by real SKUs. */
#include "stock.h"
#include "stock_internal.h"
#include "../common/log.h"
#include "../common/timeutil.h"

#include <stdlib.h>
#include <string.h>

struct fs__sku {
    fs__sku_t *next;
    uint32_t hash;
    uint64_t checked_ns; /* when Redis last said sold out, or a recheck was let through */
    int marked;
    int64_t avail;      /* units left after the last answered batch; -1 unknown */
    uint64_t avail_ns;  /* when avail was set */
    int64_t pending;    /* units of requests queued or in flight on this loop */
    double tokens;      /* admission bucket */
    uint64_t refill_ns;
    uint64_t wave_ns;   /* when this loop last sent a wave of it (0: never) */
    double rate;        /* its requests per ns between those waves (0: not known yet) */
    char key[]; /* "launch:sku", as in fs:stock messages */
};

static uint32_t fs__h(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static fs__sku_t *fs__find(fs_stock_t *st, const char *key, size_t n, uint32_t h)
{
    for (fs__sku_t *e = st->soldout[h % FS__NBUCKETS]; e; e = e->next)
        if (e->hash == h && strlen(e->key) == n && memcmp(e->key, key, n) == 0) return e;
    return NULL;
}

static size_t fs__key(char *out, const char *launch, const char *sku)
{
    size_t ll = strlen(launch), sl = strlen(sku);
    memcpy(out, launch, ll);
    out[ll] = ':';
    memcpy(out + ll + 1, sku, sl);
    out[ll + 1 + sl] = 0;
    return ll + 1 + sl;
}

fs__sku_t *fs__sku_find(fs_stock_t *st, const char *launch, const char *sku)
{
    char key[2 * FS_ID_MAX + 2];
    size_t n = fs__key(key, launch, sku);
    return fs__find(st, key, n, fs__h(key, n));
}

fs__sku_t *fs__sku_get(fs_stock_t *st, const char *launch, const char *sku)
{
    char key[2 * FS_ID_MAX + 2];
    size_t n = fs__key(key, launch, sku);
    uint32_t h = fs__h(key, n);
    fs__sku_t *e = fs__find(st, key, n, h);
    if (e) return e;
    e = fs_xcalloc(1, sizeof *e + n + 1);
    e->tokens = st->admission_per_sec;
    e->refill_ns = fs_mono_ns();
    e->avail = -1;
    memcpy(e->key, key, n + 1);
    e->hash = h;
    e->next = st->soldout[h % FS__NBUCKETS];
    st->soldout[h % FS__NBUCKETS] = e;
    return e;
}

void fs__sku_wave(fs__sku_t *e, size_t n, uint64_t now)
{
    if (e->wave_ns && now > e->wave_ns) {
        double r = (double)n / (double)(now - e->wave_ns);
        e->rate = r < e->rate ? r : (e->rate + r) / 2; /* down at once, up smoothed */
    }
    e->wave_ns = now;
}

double fs__sku_rate(const fs__sku_t *e)
{
    return e->rate;
}

int fs__soldout_hit(fs_stock_t *st, fs__sku_t *e)
{
    if (!e || !e->marked) return 0;
    uint64_t now = fs_mono_ns();
    if (now - e->checked_ns >= st->soldout_recheck_ns) {
        /* Let this one through to Redis (past the units-ahead rule too): its answer refreshes or
         * drops the mark. */
        e->checked_ns = now;
        e->avail = -1;
        return 0;
    }
    return 1;
}

void fs__soldout_mark(fs__sku_t *e, int sold_out)
{
    if (sold_out && !e->marked) {
        const char *colon = strchr(e->key, ':'); /* "launch:sku"; launch ids have no ':' */
        fs_info("sold_out", "launch=%.*s sku=%s", (int)(colon - e->key), e->key, colon + 1);
    }
    e->marked = sold_out;
    if (sold_out) e->checked_ns = fs_mono_ns();
}

int fs__admission_take(fs_stock_t *st, fs__sku_t *e)
{
    if (st->admission_per_sec <= 0 || !e) return 1; /* !e: not known to exist yet: Redis answers */
    uint64_t now = fs_mono_ns();
    /* Refill at the cap's rate, holding at most one second's worth. */
    e->tokens += (double)(now - e->refill_ns) / 1e9 * st->admission_per_sec;
    if (e->tokens > st->admission_per_sec) e->tokens = st->admission_per_sec;
    e->refill_ns = now;
    if (e->tokens < 1) return 0;
    e->tokens -= 1;
    return 1;
}

int fs__units_claim(fs_stock_t *st, fs__sku_t *e, fs_reserve_item_t *it)
{
    if (!e) return 0; /* not known to exist yet: Redis answers it */
    /* A figure no answer has refreshed for a re-check interval (everything was refused from
     * memory, and an fs:stock message may have been lost) is unknown: this one asks Redis. */
    if (e->avail >= 0 && fs_mono_ns() - e->avail_ns >= st->soldout_recheck_ns) e->avail = -1;
    if (e->avail >= 0 && e->pending + it->qty > e->avail) return 1;
    e->pending += it->qty;
    it->units = e;
    return 0;
}

void fs__units_release(fs_reserve_item_t *it)
{
    fs__sku_t *e = it->units;
    if (!e) return;
    e->pending -= it->qty;
    it->units = NULL;
}

void fs__units_left(fs__sku_t *e, int64_t available)
{
    e->avail = available;
    e->avail_ns = fs_mono_ns();
}

void fs_stock_units_back(fs_stock_t *st, const char *launch, const char *sku)
{
    fs__sku_t *e = fs__sku_get(st, launch, sku);
    fs__soldout_mark(e, 0);
    e->avail = -1;
}

void fs__soldout_on_message(const char *msg, size_t len, void *arg)
{
    fs_stock_t *st = arg;
    if (!msg) { /* (re)subscribed: what was missed is unknown */
        for (int b = 0; b < FS__NBUCKETS; b++)
            for (fs__sku_t *e = st->soldout[b]; e; e = e->next)
                e->marked = 0, e->avail = -1;
        return;
    }
    fs__sku_t *e = fs__find(st, msg, len, fs__h(msg, len));
    if (e) e->marked = 0, e->avail = -1;
}

void fs__soldout_free(fs_stock_t *st)
{
    for (int b = 0; b < FS__NBUCKETS; b++) {
        fs__sku_t *e = st->soldout[b];
        while (e) {
            fs__sku_t *next = e->next;
            free(e);
            e = next;
        }
        st->soldout[b] = NULL;
    }
}
