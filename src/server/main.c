/* flashsale-server: configuration, one worker (event loop + listener + Redis client + stock
 * queues + API) per thread, signals and graceful shutdown.
 *
 * Threads: FLASHSALE_THREADS workers each run their own libuv loop with their own SO_REUSEPORT
 * listener and Redis connection; nothing mutable is shared but the metrics blocks (atomics). The
 * main thread waits for SIGTERM/SIGINT and then asks every worker to drain through a uv_async. */
#include "../api/api.h"
#include "../api/stats.h"
#include "../common/log.h"
#include "../common/timeutil.h"
#include "../http/http.h"
#include "../redis/redis.h"
#include "../redis/redis_tls.h"
#include "../stock/stock.h"
#include "flashsale/config.h"
#include "flashsale/error.h"
#include "flashsale/version.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

extern const char fs_lua_library[];
extern const size_t fs_lua_library_len;

typedef struct {
    int index;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t stop_async;
    uv_timer_t force_timer;
    fs_http_server_t *http;
    fs_redis_t *redis;
    fs_tls_ctx_t *redis_tls; /* rediss://: this loop's own (OpenSSL contexts are not shared) */
    fs_stock_t *stock;
    fs_api_t *api;
    fs_metrics_t metrics;
    int shutdown_timeout_ms;
    int stopping;
} fs__worker_t;

static fs_config_t fs__cfg;
static fs_api_shared_t fs__shared;
static fs_http_limits_t *fs__limits; /* connection limits shared by every loop */
static fs_stock_hub_t *fs__hub;       /* the loops' SKU leaders; NULL with one loop */

static void fs__usage(FILE *f)
{
    fprintf(f,
            "usage: flashsale-server [--config FILE] [--routes] [--help] [--version]\n"
            "\n"
            "Serves flash-sale launches: reservations, confirms and cancels over HTTP, with stock in\n"
            "Redis changed only by the flashsale Redis Functions.\n"
            "\n"
            "  -c, --config FILE  read settings from an INI file (environment variables override it)\n"
            "      --routes       print the HTTP routes and exit\n"
            "  -h, --help         print this help and exit\n"
            "  -v, --version      print the version and exit\n"
            "\n"
            "Settings ([section] key = environment variable, default):\n"
            "  [server] listen              FLASHSALE_LISTEN               127.0.0.1:8080\n"
            "  [server] threads             FLASHSALE_THREADS              number of cores\n"
            "  [server] log_level           FLASHSALE_LOG_LEVEL            info (debug|info|warn|error)\n"
            "  [server] idle_timeout_ms     FLASHSALE_IDLE_TIMEOUT_MS      30000\n"
            "  [server] shutdown_timeout_ms FLASHSALE_SHUTDOWN_TIMEOUT_MS  5000\n"
            "  [server] drain_grace_ms      FLASHSALE_DRAIN_GRACE_MS       1000\n"
            "  [server] sweep_interval_ms   FLASHSALE_SWEEP_INTERVAL_MS    250\n"
            "  [server] soldout_recheck_ms  FLASHSALE_SOLDOUT_RECHECK_MS   1000\n"
            "  [server] queue_max_wait_ms   FLASHSALE_QUEUE_MAX_WAIT_MS    1000\n"
            "  [server] queue_max_len       FLASHSALE_QUEUE_MAX_LEN        10000\n"
            "  [server] batch_linger_us     FLASHSALE_BATCH_LINGER_US      0 (off; e.g. 500 when Redis's CPU is the limit)\n"
            "  [server] batch_target        FLASHSALE_BATCH_TARGET         32\n"
            "  [server] admission_per_sku   FLASHSALE_ADMISSION_PER_SKU    0 (no cap)\n"
            "  [server] grouped_holds       FLASHSALE_GROUPED_HOLDS        1 (0 while v3 servers share Redis)\n"
            "  [server] trusted_proxies     FLASHSALE_TRUSTED_PROXIES      (none; IPs/CIDRs, comma-separated)\n"
            "  [server] max_connections     FLASHSALE_MAX_CONNECTIONS      100000\n"
            "  [server] max_connections_per_addr FLASHSALE_MAX_CONNECTIONS_PER_ADDR 1000\n"
            "  [server] header_timeout_ms   FLASHSALE_HEADER_TIMEOUT_MS    10000\n"
            "  [server] body_timeout_ms     FLASHSALE_BODY_TIMEOUT_MS      30000\n"
            "  [redis]  url                 FLASHSALE_REDIS                redis://127.0.0.1:6379/0\n"
            "  [redis]  timeout_ms          FLASHSALE_REDIS_TIMEOUT_MS     1000\n"
            "  [redis]  tls_ca_file         FLASHSALE_REDIS_TLS_CA_FILE    (system roots)\n"
            "  [redis]  tls_cert_file       FLASHSALE_REDIS_TLS_CERT_FILE  (none)\n"
            "  [redis]  tls_key_file        FLASHSALE_REDIS_TLS_KEY_FILE   (none)\n"
            "  [auth]   api_keys            FLASHSALE_API_KEYS             (required, comma-separated)\n"
            "  [auth]   shopper_secret      FLASHSALE_SHOPPER_SECRET       (none; enables X-Shopper-Token, >= 16 bytes)\n"
            "  [auth]   admin_token         FLASHSALE_ADMIN_TOKEN          (required unless [tokens] has an operator)\n"
            "  [tokens] NAME = ROLE:TOKEN   (file only)                    named operator tokens, ROLE viewer|operator\n");
}

/* ---- worker lifecycle ---- */

static void fs__on_ready(int ready, void *arg)
{
    fs__worker_t *w = arg;
    /* The hub first: whoever sees the gauge change finds the other loops already told. */
    if (w->stock) fs_stock_redis_ready(w->stock, ready);
    atomic_store(&w->metrics.redis_connected, (uint64_t)(ready ? 1 : 0));
}

static void fs__close_cb(uv_handle_t *h)
{
    (void)h;
}

/* Everything is answered (or abandoned): release Redis, stock and the loop's own handles. */
static void fs__worker_finish(void *arg)
{
    fs__worker_t *w = arg;
    if (w->stopping == 2) return;
    w->stopping = 2;
    if (w->http) fs_http_server_close(w->http);
    w->http = NULL;
    fs_stats_stop(w->api->stats);
    /* Redis first: its pending callbacks fire (with FS_EIO) while the stock layer still exists. */
    fs_redis_close(w->redis);
    fs_stock_close(w->stock);
    uv_close((uv_handle_t *)&w->stop_async, fs__close_cb);
    uv_timer_stop(&w->force_timer);
    uv_close((uv_handle_t *)&w->force_timer, fs__close_cb);
}

static void fs__on_force(uv_timer_t *t)
{
    fs__worker_t *w = t->data;
    fs_warn("shutdown_forced", "worker=%d open_connections=%zu", w->index,
            fs_http_server_connections(w->http));
    fs_http_server_close(w->http);
    w->http = NULL;
    fs__worker_finish(w);
}

/* This loop's connections are answered; requests the other loops handed it (for the SKUs it
 * leads) may still be queued or in flight: finish once they are answered too. */
static void fs__worker_drained(void *arg)
{
    fs__worker_t *w = arg;
    fs_stock_quiesce(w->stock, fs__worker_finish, w);
}

static void fs__on_stop(uv_async_t *a)
{
    fs__worker_t *w = a->data;
    if (w->stopping) return;
    w->stopping = 1;
    uv_timer_start(&w->force_timer, fs__on_force, (uint64_t)w->shutdown_timeout_ms, 0);
    fs_http_server_drain(w->http, fs__worker_drained, w);
}

static void fs__worker_run(void *arg)
{
    fs__worker_t *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

static int fs__worker_init(fs__worker_t *w, int index, const char *host, int port,
                           const fs_redis_url_t *ru, char *err, size_t errcap)
{
    w->index = index;
    w->shutdown_timeout_ms = fs__cfg.shutdown_timeout_ms;
    uv_loop_init(&w->loop);
    uv_async_init(&w->loop, &w->stop_async, fs__on_stop);
    w->stop_async.data = w;
    uv_timer_init(&w->loop, &w->force_timer);
    w->force_timer.data = w;
    if (fs_redis_tls_ctx(ru, fs__cfg.redis_tls_ca_file, fs__cfg.redis_tls_cert_file,
                         fs__cfg.redis_tls_key_file, &w->redis_tls, err, errcap))
        return -1;
    fs_redis_opts_t ro = {.host = ru->host, .port = ru->port, .db = ru->db, .user = ru->user,
                          .password = ru->password, .tls = w->redis_tls,
                          .timeout_ms = fs__cfg.redis_timeout_ms,
                          .library = fs_lua_library, .library_len = fs_lua_library_len,
                          .on_ready = fs__on_ready, .arg = w, .name = "main"};
    fs_http_server_opts_t ho = {.host = host, .port = port,
                                .idle_timeout_ms = fs__cfg.idle_timeout_ms,
                                .drain_grace_ms = fs__cfg.drain_grace_ms,
                                .header_timeout_ms = fs__cfg.header_timeout_ms,
                                .body_timeout_ms = fs__cfg.body_timeout_ms,
                                .max_header_bytes = 16384, .max_body_bytes = 16384,
                                .reuseport = fs__cfg.threads > 1,
                                .on_request = fs_api_handle,
                                .open_gauge = &w->metrics.connections_open,
                                .trusted_proxies = fs__cfg.trusted_proxies,
                                .limits = fs__limits,
                                .rejected_counter = &w->metrics.connections_rejected};
    w->redis = fs_redis_new(&w->loop, &ro);
    fs_stock_opts_t so = {.redis = &ro,
                          .soldout_recheck_ms = fs__cfg.soldout_recheck_ms,
                          .queue_max_wait_ms = fs__cfg.queue_max_wait_ms,
                          .queue_max_len = fs__cfg.queue_max_len,
                          .batch_linger_us = fs__cfg.batch_linger_us,
                          .batch_target = fs__cfg.batch_target,
                          /* each loop takes its share of the server's cap */
                          .admission_per_sec = (double)fs__cfg.admission_per_sku / fs__cfg.threads,
                          .grouped_holds = fs__cfg.grouped_holds,
                          .hub = fs__hub, .index = index};
    w->stock = fs_stock_new(&w->loop, w->redis, &so);
    w->api = fs_api_new(&fs__shared, &w->metrics, w->stock);
    w->api->stats = fs_stats_new(&w->loop, w->redis); /* publishes to Redis every second */
    fs_stats_on_tick(w->api->stats, fs_api_publish_metrics, w->api);
    ho.user = w->api;
    int rc = fs_http_server_start(&w->http, &w->loop, &ho, err, errcap);
    if (rc) return rc;
    /* One sweeper per server, not per loop: each loop's would call fs_expire for the same SKUs
     * when they come due, and the calls of a sweep reach Redis together (about 20 us each), with
     * reservations waiting behind them. */
    if (index == 0) fs_stock_start_sweeper(w->stock, fs__cfg.sweep_interval_ms);
    return FS_OK;
}

/* ---- main ---- */

static uv_sem_t fs__signal_sem;

/* Open files the server needs besides its client connections: per event loop its epoll and wake-up
 * descriptors, its listener and its two Redis connections; and a few for the process. */
static long fs__fd_reserve(int loops)
{
    return 16 + 8L * loops;
}

/* Raises the soft limit of open files (often 1,024) to what max_connections needs, as far as the
 * hard limit allows. Returns the connections the server can hold: max_connections, or fewer when
 * the hard limit is lower (said in a warning), so that the excess is refused as over
 * max_connections (closed at once, counted) instead of failing to accept. */
static int fs__fit_open_files(int max_connections, int loops)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return max_connections;
    rlim_t want = (rlim_t)max_connections + (rlim_t)fs__fd_reserve(loops);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        struct rlimit up = {rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want,
                            rl.rlim_max};
        if (up.rlim_cur > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl.rlim_cur = up.rlim_cur;
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want) return max_connections;
    long fit = (long)rl.rlim_cur - fs__fd_reserve(loops);
    if (fit < 1) fit = 1;
    fs_warn(
        "fd_limit_low",
        "open_files=%llu max_connections=%d effective_max_connections=%ld hint=\"raise the hard "
        "limit of open files to %llu or more (ulimit -Hn; LimitNOFILE= in a systemd unit)\"",
        (unsigned long long)rl.rlim_cur, max_connections, fit, (unsigned long long)want);
    return (int)fit;
}

static void fs__on_signal(int sig)
{
    (void)sig;
    uv_sem_post(&fs__signal_sem);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"version", no_argument, NULL, 'v'},
                                         {"routes", no_argument, NULL, 'r'},
                                         {NULL, 0, NULL, 0}};
    const char *config_path = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:hv", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; break;
        case 'h': fs__usage(stdout); return 0;
        case 'v': printf("flashsale-server %s\n", FS_VERSION); return 0;
        case 'r': fs_api_print_routes(stdout); return 0;
        default: fs__usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "flashsale-server: unexpected argument %s\n", argv[optind]);
        fs__usage(stderr);
        return 2;
    }

    char err[512];
    fs_config_defaults(&fs__cfg);
    if (fs_config_load(&fs__cfg, config_path, err, sizeof err) ||
        fs_config_validate(&fs__cfg, err, sizeof err)) {
        fprintf(stderr, "flashsale-server: %s\n", err);
        return 1;
    }
    fs_log_set_level((fs_log_level_t)fs__cfg.log_level);

    char host[64];
    int port;
    fs_redis_url_t ru;
    fs_parse_hostport(fs__cfg.listen, host, sizeof host, &port);
    fs_redis_url_parse(fs__cfg.redis_url, &ru);
    fs_secret_set_add_csv(&fs__shared.api_keys, fs__cfg.api_keys);
    fs_api_tokens_init(&fs__shared, &fs__cfg);
    fs__shared.shopper_secret = fs__cfg.shopper_secret;

    signal(SIGPIPE, SIG_IGN);
    int n = fs__cfg.threads;
    fs__worker_t *workers = fs_xcalloc((size_t)n, sizeof *workers);
    fs__limits = fs_http_limits_new((size_t)fs__fit_open_files(fs__cfg.max_connections, n),
                                    (size_t)fs__cfg.max_connections_per_addr);
    fs__shared.metrics = fs_xcalloc((size_t)n, sizeof *fs__shared.metrics);
    fs__shared.nloops = n;
    /* One reservation call per SKU per server, not per loop (src/stock/stock.h). */
    if (n > 1) fs__hub = fs_stock_hub_new(n);
    for (int i = 0; i < n; i++) {
        fs__shared.metrics[i] = &workers[i].metrics;
        if (fs__worker_init(&workers[i], i, host, port, &ru, err, sizeof err)) {
            fprintf(stderr, "flashsale-server: %s\n", err);
            fs_error("startup_failed", "reason=\"%s\"", err);
            return 1;
        }
    }
    fs_info("listening", "addr=%s threads=%d redis=%s:%d/%d version=%s", fs__cfg.listen, n, ru.host,
            ru.port, ru.db, FS_VERSION);

    uv_sem_init(&fs__signal_sem, 0);
    struct sigaction sa = {.sa_handler = fs__on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    for (int i = 0; i < n; i++) uv_thread_create(&workers[i].thread, fs__worker_run, &workers[i]);
    uv_sem_wait(&fs__signal_sem);
    fs_info("shutting_down", "timeout_ms=%d", fs__cfg.shutdown_timeout_ms);
    for (int i = 0; i < n; i++) uv_async_send(&workers[i].stop_async);
    for (int i = 0; i < n; i++) {
        uv_thread_join(&workers[i].thread);
        fs_api_free(workers[i].api);
        uv_loop_close(&workers[i].loop);
    }
    fs_stock_hub_free(fs__hub);
    for (int i = 0; i < n; i++) fs_tls_ctx_free(workers[i].redis_tls);
    fs_info("stopped", "%s", "");
    free(fs__shared.metrics);
    free(workers);
    fs_http_limits_free(fs__limits);
    fs_secret_set_free(&fs__shared.api_keys);
    fs_api_tokens_free(&fs__shared);
    fs_config_free(&fs__cfg);
    return 0;
}
