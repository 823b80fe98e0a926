/* Counters behind GET /metrics (Prometheus text format). One fs_metrics_t per loop; they are summed
 * when scraped, so counters are relaxed atomics (written by their own loop, read by any). */
#ifndef FS_METRICS_H
#define FS_METRICS_H

#include "../common/buf.h"

#include <stdatomic.h>
#include <stdint.h>

#define FS_METRICS_ROUTES 32
#define FS_METRICS_STATUSES 16
#define FS_METRICS_BUCKETS 13
#define FS_METRICS_OUTCOMES 16

typedef struct {
    _Atomic uint64_t requests[FS_METRICS_ROUTES][FS_METRICS_STATUSES];
    _Atomic uint64_t latency[FS_METRICS_ROUTES][FS_METRICS_BUCKETS]; /* non-cumulative */
    _Atomic uint64_t latency_sum_us[FS_METRICS_ROUTES];
    _Atomic uint64_t reservations[FS_METRICS_OUTCOMES];
    _Atomic uint64_t sold_out_cached, reserve_batches, reserve_batched, reserve_rerouted;
    /* copied from other modules' stats by their owner loop */
    _Atomic uint64_t redis_commands, redis_errors, redis_timeouts, redis_reconnects;
    _Atomic uint64_t connections_open, redis_connected;
    _Atomic uint64_t connections_rejected; /* over the connection limits, closed at once */
} fs_metrics_t;

/* Records one answered request. route < FS_METRICS_ROUTES. */
void fs_metrics_request(fs_metrics_t *m, int route, int status, uint64_t dur_ns);
/* Writes the sum of n metrics blocks in Prometheus text format. route_names[i] names route i;
 * outcome_names[i] names outcome i (NULL ends the list). */
void fs_metrics_write(fs_buf_t *out, fs_metrics_t *const *ms, int n, const char *const *route_names,
                      int nroutes, const char *const *outcome_names);

#endif
