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

#endif
