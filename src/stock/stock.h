/* The stock layer: every call that changes or reads stock, as calls of the `flashsale` Redis
 * Functions (docs/redis.md), and the per-SKU reservation queues that batch reservations.
 *
 * Reservations are queued per SKU in arrival order and sent as one `fs_reserve` call per SKU per
 * loop turn (a libuv check handle flushes after each I/O poll), so one Function call decides a
 * whole batch atomically, in order. Other calls go straight to Redis.
 *
 * A server with several event loops gives them one hub: each SKU then has a leader loop (by a
 * hash of its name), the other loops hand it their reservations for that SKU, and its calls carry
 * the requests of every loop. One call per SKU per server instead of one per loop: the fixed cost
 * of a call (most of Redis's work per reservation at these batch sizes) is shared by twice as
 * many requests with two loops. Answers go back to the loop the request came from.
 *
 * Knows nothing of HTTP. One fs_stock_t per loop. */
#ifndef FS_STOCK_H
#define FS_STOCK_H

#include "../common/ids.h"
#include "../redis/redis.h"

#include <stdint.h>
#include <uv.h>

typedef struct fs_stock fs_stock_t;

/* Names of the functions of lua/flashsale.lua as the server calls them: each carries the
 * library's API version (library flashsale_v5, functions fs_reserve_v5, ...), so that servers of
 * two versions can share one Redis during a rolling deploy, each calling its own functions.
 * Raise it together with API in the Lua whenever a function's arguments or reply change. */
#define FS_LUA_API "5"
#define FS_FN(name) name "_v" FS_LUA_API

typedef enum {
    FS_RES_OK = 0,
    FS_RES_SOLD_OUT,
    FS_RES_LIMIT_EXCEEDED,
    FS_RES_NOT_OPEN,
    FS_RES_NOT_FOUND,
    FS_RES_RATE_LIMITED, /* over the launch's per-shopper or per-address rate (GCRA, in Redis) */
    FS_RES_OVERLOADED,  /* waited too long in the queue, or the queue was full */
    FS_RES_UNAVAILABLE, /* Redis not reachable, not ready, or timed out */
    FS_RES_ERROR,       /* Redis answered something unexpected */
    FS_RES__COUNT
} fs_res_code_t;

const char *fs_res_code_name(fs_res_code_t c); /* "ok", "sold_out", ... */

/* One reservation request. The caller owns it (usually inside its per-request context) and keeps
 * it and every pointer in it valid until `done` fires, exactly once. */
typedef struct fs_reserve_item {
    /* in */
    const char *launch, *sku, *user, *idem; /* launch/sku/user NUL-terminated; idem may be NULL */
    size_t user_len, idem_len;
    const char *addr; /* client address for the per-address rate limit; "" for none */
    int qty;
    void (*done)(struct fs_reserve_item *it);
    void *arg;
    /* out */
    fs_res_code_t code;
    char rid[FS_RID_MAX + 1];
    size_t rid_len;
    int qty_out;
    int64_t expires_ms, created_ms;
    int replayed;
    /* RateLimit figures when the launch has rate limits (rl_on): per limit (0 shopper,
     * 1 address) quota, window_s, remaining, reset_s; a quota of 0 means that limit is off. */
    int rl_on;
    int64_t rl[2][4];
    /* internal */
    struct fs_reserve_item *next;
    uint64_t queued_ns;
    void *units; /* the SKU's entry (soldout.c) while qty counts as pending there */
    struct fs_stock *st;
    int origin;        /* the loop that handed it to its SKU's leader (hub), or -1 */
    int rerouted;      /* moved once already because a loop's Redis connection was down (hub) */
    int retry;         /* handed back unsent: its loop sends it itself (hub) */
    int64_t left_seen; /* units left after its batch, as Redis said; -1: no such answer */
} fs_reserve_item_t;

typedef struct {
    uint64_t batches, batched_items;
    uint64_t outcomes[FS_RES__COUNT];
    uint64_t sold_out_cached; /* sold_out answers given without fs_reserve: from memory (the
                                 SKU is known sold out, or the units queued ahead already
                                 exceed what is left), or with fs_idem_sold_out for a request
                                 with an Idempotency-Key (also counted in outcomes) */
    uint64_t sub_lost; /* connections of its fs:stock subscription lost (closed, or silent) */
    uint64_t rerouted; /* requests this loop handed to another because its own Redis connection
                          was down (new ones, and those queued when it went) */
} fs_stock_stats_t;

typedef struct {
    const fs_redis_opts_t *redis; /* for the fs:stock subscription: its Redis (host, port, user,
                                     password) and timeout_ms, within which a probe of the
                                     subscription must be answered; read by fs_stock_new */
    int soldout_recheck_ms; /* a cached "sold out" lets one request through to Redis this often */
    int queue_max_wait_ms;  /* longest wait in a SKU's queue before "overloaded" */
    int queue_max_len;      /* most requests waiting in one SKU's queue */
    int batch_linger_us;    /* a busy SKU's next call waits up to this long (0: never) ... */
    int batch_target;       /* ... for this many requests (reserve_queue.c) */
    double admission_per_sec; /* reservation requests per second let through per SKU on this
                                 loop (0: no cap); the excess is FS_RES_OVERLOADED */
    int grouped_holds; /* one-unit batches without idempotency keys go to fs_reserve_group (one
                          hold record per call) rather than fs_reserve_plain (one per hold) */
    struct fs_stock_hub *hub; /* shared by the server's loops; NULL with one loop */
    int index;                /* this loop's number in the hub, 0 .. loops - 1 */
} fs_stock_opts_t;

/* The hub of a server's loops: created before they run, freed after they all stopped. */
typedef struct fs_stock_hub fs_stock_hub_t;
fs_stock_hub_t *fs_stock_hub_new(int loops);
void fs_stock_hub_free(fs_stock_hub_t *h);

fs_stock_t *fs_stock_new(uv_loop_t *loop, fs_redis_t *redis, const fs_stock_opts_t *o);
/* This loop's Redis connection became ready (1) or not (0) (its on_ready): while it is not, the
 * other loops send the SKUs this loop leads themselves. */
void fs_stock_redis_ready(fs_stock_t *st, int ready);
/* Before a graceful close: stops leading SKUs for the other loops (they send their requests
 * themselves from then on) and calls cb(arg) once every request they handed this loop has been
 * answered: at once when none is, else later from the loop. fs_stock_close cancels it. */
void fs_stock_quiesce(fs_stock_t *st, void (*cb)(void *arg), void *arg);
/* Requests still queued or in flight are answered FS_RES_UNAVAILABLE (those of other loops on
 * their own loop); the stock layer is freed once those this loop handed to others are back. */
void fs_stock_close(fs_stock_t *st);
fs_stock_stats_t fs_stock_stats(const fs_stock_t *st);
fs_redis_t *fs_stock_redis(fs_stock_t *st);
/* fs_redis_command on this loop's Redis connection, or, while it is down (reconnecting) and another
 * loop's is up, on that one: cb then runs on this loop all the same, with a copy of the reply. */
void fs_stock_command(fs_stock_t *st, fs_redis_cb cb, void *arg, int argc, const char **argv,
                      const size_t *lens);

/* Queues a reservation; `done` fires later, or synchronously: FS_RES_UNAVAILABLE when Redis is not
 * ready (with several loops: when no loop's connection is), FS_RES_OVERLOADED when the SKU's queue
 * is full, FS_RES_SOLD_OUT when the SKU is known to be sold out (requests with an idempotency key
 * always go to Redis, which may hold their first answer). */
void fs_stock_reserve(fs_stock_t *st, fs_reserve_item_t *it);

/* Units of (launch, sku) came back (a cancel, an expiry, a restock, a reopen answered on this
 * loop): drop this loop's sold-out mark now rather than when the fs:stock message arrives. */
void fs_stock_units_back(fs_stock_t *st, const char *launch, const char *sku);

/* Direct calls. Each sends one FCALL and passes the raw reply to cb (see fs_redis_cb); the reply
 * formats are in docs/redis.md. String arguments are copied before the call returns. */
void fs_stock_confirm(fs_stock_t *st, const char *launch, const char *sku, const char *rid,
                      const char *user, size_t user_len, const char *payment_ref, size_t pref_len,
                      fs_redis_cb cb, void *arg);
void fs_stock_cancel(fs_stock_t *st, const char *launch, const char *sku, const char *rid,
                     const char *user, size_t user_len, fs_redis_cb cb, void *arg);
void fs_stock_get_reservation(fs_stock_t *st, const char *launch, const char *sku, const char *rid,
                              const char *user, size_t user_len, fs_redis_cb cb, void *arg);
void fs_stock_restock(fs_stock_t *st, const char *launch, const char *sku, int64_t delta,
                      fs_redis_cb cb, void *arg);
void fs_stock_launch_get(fs_stock_t *st, const char *launch, fs_redis_cb cb, void *arg);
void fs_stock_launch_state(fs_stock_t *st, const char *launch, const char *action, fs_redis_cb cb,
                           void *arg);
/* Rate limits of a launch: rates in requests per 1000 s, bursts in requests; -1 keeps a value. */
void fs_stock_launch_rate_limit(fs_stock_t *st, const char *launch, const int64_t v[4],
                                fs_redis_cb cb, void *arg);

typedef struct {
    const char *sku;
    int64_t stock, per_user_limit, price_cents;
} fs_sku_def_t;

typedef struct {
    const char *launch, *name;
    int64_t hold_seconds, starts_at_ms, ends_at_ms;
    const fs_sku_def_t *skus;
    size_t nskus;
} fs_launch_def_t;

void fs_stock_launch_put(fs_stock_t *st, const fs_launch_def_t *def, fs_redis_cb cb, void *arg);

/* A launch as fs_launch_get returns it (also the tail of put/state replies), parsed. */
typedef struct {
    int64_t total, available, held, sold, per_user_limit, price_cents;
    const char *sku; /* points into the reply */
    size_t sku_len;
} fs_sku_view_t;

typedef struct {
    const char *launch, *name, *state;
    size_t launch_len, name_len, state_len;
    int64_t hold_seconds, starts_at_ms, ends_at_ms, now_ms;
    int64_t rl[4]; /* shopper_milli, shopper_burst, address_milli, address_burst */
    size_t nskus;
    fs_sku_view_t *skus; /* malloc'd; free with fs_launch_view_free */
} fs_launch_view_t;

/* Parses reply elements [first..] in the fs_launch_get layout ("ok", created, launch, ...).
 * Returns 0 or FS_EPROTO. */
int fs_launch_view_parse(const redisReply *reply, fs_launch_view_t *v);
void fs_launch_view_free(fs_launch_view_t *v);

/* The sweeper: every interval, refreshes the SKU list (at most once a second) and expires the due
 * holds of each SKU whose wait (fs_expire's: until something of it can be due) has passed. */
void fs_stock_start_sweeper(fs_stock_t *st, int interval_ms);

#endif
