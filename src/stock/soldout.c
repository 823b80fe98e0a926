/* The sold-out cache: SKUs known to have no unit left, answered without Redis.
 *
 * A SKU is marked when Redis answers sold_out to a request for one unit (then available was 0,
 * and nothing in the rest of that batch can raise it). The mark is dropped when a message on the
 * fs:stock channel says units of that SKU came back (cancel, expiry, restock, state change), when
 * the subscription restarts (messages may have been lost), and, as a safety net, one request per
 * recheck interval still goes to Redis and refreshes or drops the mark with its answer.
 *
 * Only SKUs that Redis said exist are ever marked, so the table is bounded by real SKUs. */
#include "stock.h"
#include "stock_internal.h"
#include "../common/log.h"
#include "../common/timeutil.h"

#include <stdlib.h>
#include <string.h>

struct fs__soldout {
    struct fs__soldout *next;
    uint32_t hash;
    uint64_t checked_ns; /* when Redis last said sold out, or a recheck was let through */
    int marked;
    char key[]; /* "launch:sku", as in fs:stock messages */
};

static uint32_t fs__h(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static struct fs__soldout *fs__find(fs_stock_t *st, const char *key, size_t n, uint32_t h)
{
    for (struct fs__soldout *e = st->soldout[h % FS__NBUCKETS]; e; e = e->next)
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

int fs__soldout_hit(fs_stock_t *st, const char *launch, const char *sku)
{
    char key[2 * FS_ID_MAX + 2];
    size_t n = fs__key(key, launch, sku);
    struct fs__soldout *e = fs__find(st, key, n, fs__h(key, n));
    if (!e || !e->marked) return 0;
    uint64_t now = fs_mono_ns();
    if (now - e->checked_ns >= st->soldout_recheck_ns) {
        e->checked_ns = now; /* let this one through; its answer refreshes or drops the mark */
        return 0;
    }
    return 1;
}

void fs__soldout_update(fs_stock_t *st, const char *launch, const char *sku, int sold_out)
{
    char key[2 * FS_ID_MAX + 2];
    size_t n = fs__key(key, launch, sku);
    uint32_t h = fs__h(key, n);
    struct fs__soldout *e = fs__find(st, key, n, h);
    if (!e) {
        if (!sold_out) return;
        e = fs_xcalloc(1, sizeof *e + n + 1);
        memcpy(e->key, key, n + 1);
        e->hash = h;
        e->next = st->soldout[h % FS__NBUCKETS];
        st->soldout[h % FS__NBUCKETS] = e;
    }
    if (sold_out && !e->marked) fs_info("sold_out", "launch=%s sku=%s", launch, sku);
    e->marked = sold_out;
    if (sold_out) e->checked_ns = fs_mono_ns();
}

void fs_stock_units_back(fs_stock_t *st, const char *launch, const char *sku)
{
    fs__soldout_update(st, launch, sku, 0);
}

void fs__soldout_on_message(const char *msg, size_t len, void *arg)
{
    fs_stock_t *st = arg;
    if (!msg) { /* (re)subscribed: what was missed is unknown */
        for (int b = 0; b < FS__NBUCKETS; b++)
            for (struct fs__soldout *e = st->soldout[b]; e; e = e->next) e->marked = 0;
        return;
    }
    struct fs__soldout *e = fs__find(st, msg, len, fs__h(msg, len));
    if (e) e->marked = 0;
}

void fs__soldout_free(fs_stock_t *st)
{
    for (int b = 0; b < FS__NBUCKETS; b++) {
        struct fs__soldout *e = st->soldout[b];
        while (e) {
            struct fs__soldout *next = e->next;
            free(e);
            e = next;
        }
        st->soldout[b] = NULL;
    }
}
