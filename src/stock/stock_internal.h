/* Internals shared by the files of src/stock/. */
#ifndef FS_STOCK_INTERNAL_H
#define FS_STOCK_INTERNAL_H

#include "stock.h"

#define FS__NBUCKETS 256

struct fs__queue;

struct fs_stock {
    uv_loop_t *loop;
    fs_redis_t *redis;
    uv_check_t check;                      /* flushes queues after each I/O poll */
    struct fs__queue *buckets[FS__NBUCKETS]; /* SKU → queue, only while requests wait */
    struct fs__queue *dirty;               /* queues with requests to send this turn */
    fs_stock_stats_t stats;
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

#endif
