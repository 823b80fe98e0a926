/* Per-launch reservation statistics for operators (GET /admin/v1/launches/{launch}/stats).
 *
 * Each event loop counts the answers of the reserve route per launch, by outcome, with a latency
 * histogram, for the current wall-clock second, in a fixed table (no allocation per request).
 * A timer aligned on the second publishes what the second just ended counted to Redis with
 * HINCRBY into `fs:stats:{L}:<unix second>` (a hash shared by every loop of every server, expiring
 * after FS_STATS_TTL_S seconds) and starts the next second from zero. The stats endpoint reads
 * those hashes back, so it sums every instance without knowing them. Layout: docs/redis.md,
 * "Stats and audit".
 *
 * Threads: one fs_stats_t per loop; counted and published on that loop only. */
#ifndef FS_STATS_H
#define FS_STATS_H

#include "../redis/redis.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Outcomes: the eight fs_res_code_t values first (same order), then answers that never reached
 * the stock layer. */
enum {
    FS_STATS_RATE_LIMITED = 8, /* HTTP 429 */
    FS_STATS_REJECTED = 9,     /* any other answer before the stock layer: 400, 401, ... */
    FS_STATS_OUTCOMES = 10
};
#define FS_STATS_LAT_BUCKETS 40 /* bucket b < 40: 2b-th and (2b+1)-th half-octaves above 25 us */
#define FS_STATS_TTL_S 660      /* ten minutes of history, plus a minute */
#define FS_STATS_MAX_SECONDS 600

typedef struct fs_stats fs_stats_t;

/* "ok", "sold_out", "limit_exceeded", "launch_not_open", "not_found", "overloaded",
 * "unavailable", "error", "rate_limited", "rejected". */
const char *fs_stats_outcome_name(int outcome);
/* The latency bucket of a duration, and the upper bound of a bucket in milliseconds. */
int fs_stats_bucket(uint64_t dur_ns);
double fs_stats_bucket_upper_ms(int bucket);

/* Creates the counters of one loop and starts its publishing timer. */
fs_stats_t *fs_stats_new(uv_loop_t *loop, fs_redis_t *redis);
/* Also calls fn(arg) on every tick (once a second, on the loop). */
void fs_stats_on_tick(fs_stats_t *st, void (*fn)(void *arg), void *arg);
/* Stops publishing (closes the timer; the loop must run for that). Counting still works. */
void fs_stats_stop(fs_stats_t *st);
/* Frees the counters once the loop has ended; NULL is fine. */
void fs_stats_free(fs_stats_t *st);

/* Counts one answer of the reserve route for launch (not NUL-terminated). code is the
 * fs_res_code_t the stock layer decided, or -1 when the request never reached it (then status
 * decides between rate_limited and rejected). Invalid launch ids are not counted. */
void fs_stats_reserve(fs_stats_t *st, const char *launch, size_t n, int code, int status,
                      uint64_t dur_ns);

#endif
