/* Internals shared by the files of src/stock/. */
#ifndef FS_STOCK_INTERNAL_H
#define FS_STOCK_INTERNAL_H

#include "stock.h"

#define FS__NBUCKETS 256

struct fs__queue;
struct fs__soldout;
struct fs_redis_sub;

struct fs_stock {
    uv_loop_t *loop;
    fs_redis_t *redis;
    uv_check_t check;                      /* flushes queues after each I/O poll */
    struct fs__queue *buckets[FS__NBUCKETS]; /* SKU → queue, only while requests wait */
    struct fs__queue *dirty;               /* queues with requests to send this turn */
    fs_stock_stats_t stats;
    struct fs__soldout *soldout[FS__NBUCKETS]; /* SKU → sold-out mark (soldout.c) */
    uint64_t soldout_recheck_ns;
    uint64_t max_wait_ns;                  /* queue bounds (reserve_queue.c) */
    double admission_per_sec;              /* per SKU on this loop; 0 = no cap (soldout.c) */
    size_t max_queued;
    struct fs_redis_sub *sub;              /* fs:stock messages drop marks */
    /* sweeper */
    uv_timer_t sweep_timer;
    int sweeping;                          /* calls in flight */
    uint64_t skus_fetched_ns;
    char **sweep_skus;                     /* pairs: launch, sku */
    size_t sweep_nskus;
    int sweep_again;
    int closing, open_handles;
};

void fs__stock_queues_init(fs_stock_t *st);
void fs__stock_queues_close(fs_stock_t *st);

/* soldout.c */
int fs__soldout_hit(fs_stock_t *st, const char *launch, const char *sku);
void fs__soldout_update(fs_stock_t *st, const char *launch, const char *sku, int sold_out);
void fs__soldout_on_message(const char *msg, size_t len, void *arg);
void fs__soldout_free(fs_stock_t *st);
int fs__admission_take(fs_stock_t *st, const char *launch, const char *sku);
/* Units of a SKU pending on this loop (queued or in flight) against what Redis last said was
 * left: fs__units_claim counts it->qty as pending, or returns 1 when the units pending ahead
 * already take what is left (the request is answered sold_out at once); fs__units_release
 * uncounts them; fs__units_left records what the last answered batch left. */
int fs__units_claim(fs_stock_t *st, fs_reserve_item_t *it);
void fs__units_release(fs_reserve_item_t *it);
void fs__units_left(fs_stock_t *st, const char *launch, const char *sku, int64_t available);
/* (fs__units_left also creates the SKU's entry: an answer with available >= 0 means it exists.) */

#endif
