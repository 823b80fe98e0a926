/* flashsale-relay's counters, gauges and histograms, written in Prometheus text format by
 * GET /metrics. One block per process (the relay is single-threaded): plain integers. */
#ifndef FS_RELAY_METRICS_H
#define FS_RELAY_METRICS_H

#include "../common/buf.h"

#include <stdint.h>

/* Outcome of one delivery attempt. */
typedef enum {
    FS_ATT_2XX, FS_ATT_4XX, FS_ATT_408, FS_ATT_429, FS_ATT_5XX, FS_ATT_OTHER_STATUS,
    FS_ATT_TIMEOUT, FS_ATT_NETWORK, FS_ATT_TLS, FS_ATT_PROTOCOL, FS_ATT__COUNT
} fs_attempt_t;

/* Why an order was dead-lettered. */
typedef enum { FS_DEAD_REJECTED, FS_DEAD_MAX_ATTEMPTS, FS_DEAD_MALFORMED, FS_DEAD__COUNT } fs_dead_t;

#define FS_RELAY_BUCKETS 15

typedef struct {
    uint64_t count;
    uint64_t sum_us;
    uint64_t buckets[FS_RELAY_BUCKETS]; /* non-cumulative; the last one is +Inf */
} fs_relay_hist_t;

typedef struct {
    uint64_t delivered;           /* orders acknowledged after a 2xx */
    uint64_t retried;             /* attempts that failed and were scheduled again */
    uint64_t dead[FS_DEAD__COUNT];
    uint64_t attempts[FS_ATT__COUNT];
    uint64_t read, taken_over, lost, abandoned, duplicates_skipped;
    fs_relay_hist_t attempt_latency;  /* one HTTP attempt */
    fs_relay_hist_t order_latency;    /* order written to its stream -> delivered */
    /* gauges, refreshed by the lag probe */
    int lag_known;
    double lag_seconds;           /* age of the oldest order not yet delivered (0 when none) */
    uint64_t backlog;             /* entries not yet acknowledged, every relay together */
} fs_relay_metrics_t;

void fs_relay_hist_observe(fs_relay_hist_t *h, uint64_t us);
const char *fs_attempt_name(fs_attempt_t a);
const char *fs_dead_name(fs_dead_t d);

/* Live values owned by other modules, passed in when writing. */
typedef struct {
    uint64_t in_flight, held, streams, connections_open;
    uint64_t connects, reuses, tls_handshakes, tls_failures, stale_retries;
    uint64_t redis_commands, redis_errors, redis_timeouts, redis_reconnects, redis_connected;
} fs_relay_live_t;

void fs_relay_metrics_write(fs_buf_t *out, const fs_relay_metrics_t *m, const fs_relay_live_t *live);

#endif
