/* Prometheus counters (see metrics.h). */
#include "metrics.h"

#include <string.h>

static const int fs__statuses[FS_METRICS_STATUSES] = {200, 201, 202, 400, 401, 403, 404, 405,
                                                       408, 409, 413, 429, 431, 500, 503, 0};
static const double fs__bounds[FS_METRICS_BUCKETS - 1] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                          0.05,   0.1,   0.25,   0.5,   1,    2.5};

#define FS__LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define FS__INC(x, v) atomic_fetch_add_explicit(&(x), (v), memory_order_relaxed)

void fs_metrics_request(fs_metrics_t *m, int route, int status, uint64_t dur_ns)
{
    int si = FS_METRICS_STATUSES - 1;
    for (int i = 0; i < FS_METRICS_STATUSES - 1; i++)
        if (fs__statuses[i] == status) si = i;
    FS__INC(m->requests[route][si], 1);
    double s = (double)dur_ns / 1e9;
    int b = 0;
    while (b < FS_METRICS_BUCKETS - 1 && s > fs__bounds[b]) b++;
    FS__INC(m->latency[route][b], 1);
    FS__INC(m->latency_sum_us[route], dur_ns / 1000);
}

static uint64_t fs__sum(fs_metrics_t *const *ms, int n, size_t offset)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v += FS__LOAD(*(_Atomic uint64_t *)((char *)ms[i] + offset));
    return v;
}

#define FS__SUM(field) fs__sum(ms, n, offsetof(fs_metrics_t, field))

void fs_metrics_write(fs_buf_t *o, fs_metrics_t *const *ms, int n, const char *const *route_names,
                      int nroutes, const char *const *outcome_names)
{
    fs_buf_puts(o, "# HELP fs_http_requests_total HTTP requests answered, by route and status.\n"
                   "# TYPE fs_http_requests_total counter\n");
    for (int r = 0; r < nroutes; r++)
        for (int s = 0; s < FS_METRICS_STATUSES; s++) {
            uint64_t v = FS__SUM(requests[r][s]);
            if (!v) continue;
            if (fs__statuses[s])
                fs_buf_printf(o, "fs_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                              route_names[r], fs__statuses[s], (unsigned long long)v);
            else
                fs_buf_printf(o, "fs_http_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                              route_names[r], (unsigned long long)v);
        }
    fs_buf_puts(o, "# HELP fs_http_request_duration_seconds Time from a complete request to its answer.\n"
                   "# TYPE fs_http_request_duration_seconds histogram\n");
    for (int r = 0; r < nroutes; r++) {
        uint64_t cum = 0;
        for (int b = 0; b < FS_METRICS_BUCKETS; b++) cum += FS__SUM(latency[r][b]);
        if (!cum) continue;
        cum = 0;
        for (int b = 0; b < FS_METRICS_BUCKETS; b++) {
            cum += FS__SUM(latency[r][b]);
            if (b < FS_METRICS_BUCKETS - 1)
                fs_buf_printf(o, "fs_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                              route_names[r], fs__bounds[b], (unsigned long long)cum);
            else
                fs_buf_printf(o, "fs_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                              route_names[r], (unsigned long long)cum);
        }
        fs_buf_printf(o, "fs_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", route_names[r],
                      (double)FS__SUM(latency_sum_us[r]) / 1e6);
        fs_buf_printf(o, "fs_http_request_duration_seconds_count{route=\"%s\"} %llu\n", route_names[r],
                      (unsigned long long)cum);
    }
    fs_buf_puts(o, "# HELP fs_reservations_total Reservation requests decided, by outcome.\n"
                   "# TYPE fs_reservations_total counter\n");
    for (int i = 0; outcome_names[i] && i < FS_METRICS_OUTCOMES; i++)
        fs_buf_printf(o, "fs_reservations_total{outcome=\"%s\"} %llu\n", outcome_names[i],
                      (unsigned long long)FS__SUM(reservations[i]));
    fs_buf_printf(o,
                  "# HELP fs_reservations_sold_out_cached_total sold_out answers given without fs_reserve: "
                  "from memory, or with one SET NX GET of the request's idempotency key.\n"
                  "# TYPE fs_reservations_sold_out_cached_total counter\nfs_reservations_sold_out_cached_total %llu\n"
                  "# HELP fs_reserve_batches_total fs_reserve calls sent to Redis.\n"
                  "# TYPE fs_reserve_batches_total counter\nfs_reserve_batches_total %llu\n"
                  "# HELP fs_reserve_batched_total Reservation requests sent in those calls.\n"
                  "# TYPE fs_reserve_batched_total counter\nfs_reserve_batched_total %llu\n"
                  "# HELP fs_reserve_rerouted_total Reservation requests a loop handed to another "
                  "because its own Redis connection was down.\n"
                  "# TYPE fs_reserve_rerouted_total counter\nfs_reserve_rerouted_total %llu\n",
                  (unsigned long long)FS__SUM(sold_out_cached), (unsigned long long)FS__SUM(reserve_batches),
                  (unsigned long long)FS__SUM(reserve_batched),
                  (unsigned long long)FS__SUM(reserve_rerouted));
    fs_buf_printf(o,
                  "# HELP fs_redis_commands_total Commands sent to Redis.\n"
                  "# TYPE fs_redis_commands_total counter\nfs_redis_commands_total %llu\n"
                  "# HELP fs_redis_errors_total Redis error replies and failed commands.\n"
                  "# TYPE fs_redis_errors_total counter\nfs_redis_errors_total %llu\n"
                  "# HELP fs_redis_timeouts_total Commands that passed their deadline.\n"
                  "# TYPE fs_redis_timeouts_total counter\nfs_redis_timeouts_total %llu\n"
                  "# HELP fs_redis_reconnects_total Connections to Redis dropped and rebuilt.\n"
                  "# TYPE fs_redis_reconnects_total counter\nfs_redis_reconnects_total %llu\n"
                  "# HELP fs_redis_connected Event loops whose Redis connection is ready.\n"
                  "# TYPE fs_redis_connected gauge\nfs_redis_connected %llu\n"
                  "# HELP fs_http_connections_open Open client connections.\n"
                  "# TYPE fs_http_connections_open gauge\nfs_http_connections_open %llu\n"
                  "# HELP fs_http_connections_rejected_total Connections closed at once: over max_connections or max_connections_per_addr.\n"
                  "# TYPE fs_http_connections_rejected_total counter\nfs_http_connections_rejected_total %llu\n",
                  (unsigned long long)FS__SUM(redis_commands), (unsigned long long)FS__SUM(redis_errors),
                  (unsigned long long)FS__SUM(redis_timeouts),
                  (unsigned long long)FS__SUM(redis_reconnects),
                  (unsigned long long)FS__SUM(redis_connected),
                  (unsigned long long)FS__SUM(connections_open),
                  (unsigned long long)FS__SUM(connections_rejected));
}
