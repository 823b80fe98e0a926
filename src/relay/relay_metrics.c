/* Prometheus text for the relay (see relay_metrics.h). */
#include "relay_metrics.h"

#include <inttypes.h>

/* Upper bounds in seconds; the same for both histograms (one attempt, or an order's whole way). */
static const double fs__bounds[FS_RELAY_BUCKETS - 1] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                        0.25,  0.5,    1,     2.5,  5,     10,  60};

static const char *const fs__att_names[FS_ATT__COUNT] = {
    "2xx", "4xx", "408", "429", "5xx", "other_status", "timeout", "network", "tls", "protocol"};
static const char *const fs__dead_names[FS_DEAD__COUNT] = {"rejected", "max_attempts", "malformed"};

const char *fs_attempt_name(fs_attempt_t a)
{
    return fs__att_names[a];
}

const char *fs_dead_name(fs_dead_t d)
{
    return fs__dead_names[d];
}

void fs_relay_hist_observe(fs_relay_hist_t *h, uint64_t us)
{
    double s = (double)us / 1e6;
    int b = 0;
    while (b < FS_RELAY_BUCKETS - 1 && s > fs__bounds[b]) b++;
    h->buckets[b]++;
    h->count++;
    h->sum_us += us;
}

static void fs__hist(fs_buf_t *o, const char *name, const char *help, const fs_relay_hist_t *h)
{
    fs_buf_printf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int b = 0; b < FS_RELAY_BUCKETS; b++) {
        cum += h->buckets[b];
        if (b < FS_RELAY_BUCKETS - 1)
            fs_buf_printf(o, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, fs__bounds[b], cum);
        else
            fs_buf_printf(o, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
    }
    fs_buf_printf(o, "%s_sum %.6f\n%s_count %" PRIu64 "\n", name, (double)h->sum_us / 1e6, name,
                  h->count);
}

static void fs__one(fs_buf_t *o, const char *name, const char *type, const char *help, uint64_t v)
{
    fs_buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type, name, v);
}

void fs_relay_metrics_write(fs_buf_t *o, const fs_relay_metrics_t *m, const fs_relay_live_t *l)
{
    fs__one(o, "fs_relay_delivered_total", "counter", "Orders delivered (2xx) and acknowledged.",
            m->delivered);
    fs__one(o, "fs_relay_retried_total", "counter", "Failed attempts scheduled to be tried again.",
            m->retried);
    fs_buf_puts(o, "# HELP fs_relay_dead_lettered_total Orders moved to the dead-letter stream, by reason.\n"
                   "# TYPE fs_relay_dead_lettered_total counter\n");
    for (int i = 0; i < FS_DEAD__COUNT; i++)
        fs_buf_printf(o, "fs_relay_dead_lettered_total{reason=\"%s\"} %" PRIu64 "\n", fs__dead_names[i],
                      m->dead[i]);
    fs_buf_puts(o, "# HELP fs_relay_attempts_total Delivery attempts, by result.\n"
                   "# TYPE fs_relay_attempts_total counter\n");
    for (int i = 0; i < FS_ATT__COUNT; i++)
        fs_buf_printf(o, "fs_relay_attempts_total{result=\"%s\"} %" PRIu64 "\n", fs__att_names[i],
                      m->attempts[i]);
    fs__one(o, "fs_relay_entries_read_total", "counter", "New stream entries read.", m->read);
    fs__one(o, "fs_relay_entries_taken_over_total", "counter",
            "Pending entries taken over (idle ones of other consumers, or this consumer's own after a restart).",
            m->taken_over);
    fs__one(o, "fs_relay_entries_lost_total", "counter",
            "Held entries that another consumer took over meanwhile.", m->lost);
    fs__one(o, "fs_relay_entries_abandoned_total", "counter",
            "Entries given back undelivered at shutdown.", m->abandoned);
    fs__hist(o, "fs_relay_attempt_duration_seconds",
             "One delivery attempt, from sending to the answer or the failure.", &m->attempt_latency);
    fs__hist(o, "fs_relay_delivery_latency_seconds",
             "From the order's stream entry to its acknowledged delivery.", &m->order_latency);
    if (m->lag_known) {
        fs_buf_printf(o, "# HELP fs_relay_lag_seconds Age of the oldest order not yet delivered (0 when none).\n"
                         "# TYPE fs_relay_lag_seconds gauge\nfs_relay_lag_seconds %.3f\n",
                      m->lag_seconds);
        fs__one(o, "fs_relay_backlog", "gauge",
                "Entries not yet acknowledged by the group (pending or never read).", m->backlog);
    }
    fs__one(o, "fs_relay_in_flight", "gauge", "Delivery requests in flight.", l->in_flight);
    fs__one(o, "fs_relay_held", "gauge", "Entries held by this relay (in flight, waiting or finishing).",
            l->held);
    fs__one(o, "fs_relay_streams", "gauge", "Streams followed (orders and replay, per SKU).", l->streams);
    fs__one(o, "fs_relay_connections_open", "gauge", "Connections open to the target.",
            l->connections_open);
    fs__one(o, "fs_relay_connects_total", "counter", "Connections established to the target.",
            l->connects);
    fs__one(o, "fs_relay_connection_reuses_total", "counter", "Requests sent on a kept-alive connection.",
            l->reuses);
    fs__one(o, "fs_relay_tls_handshakes_total", "counter", "TLS handshakes completed and verified.",
            l->tls_handshakes);
    fs__one(o, "fs_relay_tls_failures_total", "counter",
            "TLS handshakes refused (certificate not trusted, wrong name, protocol).", l->tls_failures);
    fs__one(o, "fs_redis_commands_total", "counter", "Commands sent to Redis.", l->redis_commands);
    fs__one(o, "fs_redis_errors_total", "counter", "Redis error replies and failed commands.",
            l->redis_errors);
    fs__one(o, "fs_redis_timeouts_total", "counter", "Commands that passed their deadline.",
            l->redis_timeouts);
    fs__one(o, "fs_redis_reconnects_total", "counter", "Connections to Redis dropped and rebuilt.",
            l->redis_reconnects);
    fs__one(o, "fs_redis_connected", "gauge", "Redis connections ready (reader and writer).",
            l->redis_connected);
}
