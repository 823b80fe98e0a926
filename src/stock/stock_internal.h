/* Internals shared by the files of src/stock/. */
#ifndef FS_STOCK_INTERNAL_H
#define FS_STOCK_INTERNAL_H

#include "stock.h"
#include "../common/buf.h"

#define FS__NBUCKETS 256

struct fs__queue;
typedef struct fs__sku fs__sku_t;
struct fs_redis_sub;

struct fs_stock {
    uv_loop_t *loop;
    fs_redis_t *redis;
    uv_check_t check;                      /* flushes queues after each I/O poll */
    struct fs__queue *buckets[FS__NBUCKETS]; /* SKU → queue, only while requests wait */
    struct fs__queue *dirty;               /* queues with requests to send this turn */
    fs_stock_stats_t stats;
    fs__sku_t *soldout[FS__NBUCKETS]; /* SKU → what this loop knows of it (soldout.c) */
    uint64_t soldout_recheck_ns;
    uint64_t max_wait_ns;                  /* queue bounds (reserve_queue.c) */
    uint64_t linger_ns;                    /* batching (reserve_queue.c): 0 = send every turn */
    size_t batch_target;
    uv_timer_t linger_timer;               /* runs while a queue lingers */
    double admission_per_sec;              /* per SKU on this loop; 0 = no cap (soldout.c) */
    int grouped_holds;                     /* fs_reserve_group for plain batches */
    size_t max_queued;
    struct fs_redis_sub *sub;              /* fs:stock messages drop marks */
    /* kept for reuse by the send path (reserve_queue.c), so that a wave allocates nothing */
    struct fs__queue *spare_queues;
    size_t nspare_queues;
    struct fs__batch *spare_batches;
    const char **send_argv;                /* an fs_reserve call's arguments... */
    size_t *send_lens, send_cap;
    size_t *send_offs, *send_klens, send_kcap; /* ...and its keys, written into send_keys */
    fs_buf_t send_keys;
    /* sweeper */
    uv_timer_t sweep_timer;
    int sweeping;                          /* calls in flight */
    uint64_t skus_fetched_ns;
    struct fs__sweep_sku *sweep_skus;      /* every SKU of every launch (stock_ops.c) */
    size_t sweep_nskus;
    char skus_ver[24];                     /* fs_sku_list's version of them ("": none yet) */
    uint64_t skus_whole_ns;                /* when the whole list last came */
    int sweep_again;                       /* a call expired its most: sweep again at once */
    int closing, open_handles;
    /* the hub (hub.c; NULL with one loop) */
    struct fs_stock_hub *hub;
    int index;
    struct fs__mailbox *box;
    size_t forwarded_out;       /* this loop's requests at other loops, not back yet */
    size_t foreign;             /* other loops' requests queued or in flight here */
    void (*quiesce_cb)(void *); /* fs_stock_quiesce: called once foreign is 0 */
    void *quiesce_arg;
};

void fs__stock_queues_init(fs_stock_t *st);
void fs__stock_queues_close(fs_stock_t *st);
void fs__stock_queues_free(fs_stock_t *st); /* what the send path kept, once st is closed */
void fs__stock_on_closed(uv_handle_t *h); /* one of st's handles closed: frees st after the last */

/* hub.c: the mailboxes between loops (see there). */
typedef struct fs__mailbox fs__mailbox_t;
int fs__hub_leader(const struct fs_stock_hub *h, uint32_t sku_hash);
void fs__hub_attach(fs_stock_t *st); /* on st's loop, before it runs */
/* Hands it to loop `leader`; 0 when that loop leads no more or its Redis connection is not ready
 * (st then sends it itself). */
int fs__hub_forward(fs_stock_t *st, int leader, fs_reserve_item_t *it);
/* Hands it to a loop other than st whose Redis connection is ready, loop `first` if it is one
 * (-1: none first); 0 when there is none. */
int fs__hub_forward_any(fs_stock_t *st, int first, fs_reserve_item_t *it);
/* Sends a call on another loop's Redis connection (st's own is down); cb runs on st's loop with a
 * copy of the reply. 0 when no other loop's connection is ready (nothing sent). */
int fs__hub_command(fs_stock_t *st, fs_redis_cb cb, void *arg, int argc, const char **argv,
                    const size_t *lens);
/* Gives it, answered here (it->code set), back to the loop it came from. */
void fs__hub_send_back(fs_stock_t *st, fs_reserve_item_t *it);
/* st's Redis connection became ready (1) or not (0): st takes other loops' requests only then. */
void fs__hub_redis_ready(fs_stock_t *st, int ready);
/* Leads no more; returns the requests handed to st and not taken yet. */
fs_reserve_item_t *fs__hub_stop_leading(fs_stock_t *st);
/* Closes st's mailbox once st has nothing out at other loops; 1 if it did (cb when closed). */
int fs__hub_close(fs_stock_t *st, uv_close_cb cb);
/* reserve_queue.c, for hub.c: requests other loops handed st (a list linked by next; st leads
 * their SKUs); one of st's own, back from its leader; and the checks due after a batch of either. */
void fs__lead(fs_stock_t *st, fs_reserve_item_t *list);
void fs__returned(fs_stock_t *st, fs_reserve_item_t *it);
void fs__hub_settle(fs_stock_t *st);

/* soldout.c: what one event loop knows of each SKU Redis said exists. A request looks its SKU's
 * entry up once (fs__sku_find, NULL while unknown) and passes it to each check; answers from
 * Redis get or create it (fs__sku_get). Entries live until fs__soldout_free. */
fs__sku_t *fs__sku_find(fs_stock_t *st, const char *launch, const char *sku);
fs__sku_t *fs__sku_get(fs_stock_t *st, const char *launch, const char *sku);
/* A wave of n requests of e goes to Redis from this loop now; fs__sku_rate: its requests per ns
 * between this loop's waves (reserve_queue.c's linger): a lower figure is taken at once, a higher
 * one halfway. */
void fs__sku_wave(fs__sku_t *e, size_t n, uint64_t now);
double fs__sku_rate(const fs__sku_t *e);
/* 1: answer sold_out from memory (e may be NULL). */
int fs__soldout_hit(fs_stock_t *st, fs__sku_t *e);
void fs__soldout_mark(fs__sku_t *e, int sold_out);
void fs__soldout_on_message(const char *msg, size_t len, void *arg);
void fs__soldout_free(fs_stock_t *st);
/* 0: over the admission cap (e may be NULL). */
int fs__admission_take(fs_stock_t *st, fs__sku_t *e);
/* Units of a SKU pending on this loop (queued or in flight) against what Redis last said was
 * left: fs__units_claim counts it->qty as pending, or returns 1 when the units pending ahead
 * already take what is left (the request is answered sold_out at once; e may be NULL);
 * fs__units_release uncounts them; fs__units_left records what the last answered batch left. */
int fs__units_claim(fs_stock_t *st, fs__sku_t *e, fs_reserve_item_t *it);
void fs__units_release(fs_reserve_item_t *it);
void fs__units_left(fs__sku_t *e, int64_t available);

#endif
