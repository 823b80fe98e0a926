/* flashsale-relay: delivers every confirmed order from the Redis order streams to the fulfillment
 * endpoint (see relay.h for the design, docs/relay.md for operators).
 *
 * This file: command line, configuration, wiring of the modules on one libuv loop, signals and
 * the graceful shutdown: SIGTERM/SIGINT stop reading, give back every entry that is not in flight,
 * let the deliveries in flight finish (their acks included) for up to shutdown_timeout_ms, then
 * close everything and exit 0. A second signal, or the deadline, cuts in-flight deliveries off;
 * their entries stay pending and are delivered again later. */
#include "relay.h"
#include "../common/log.h"
#include "../common/timeutil.h"
#include "../redis/redis_tls.h"
#include "flashsale/config.h"
#include "flashsale/error.h"
#include "flashsale/version.h"

#include <getopt.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern const char fs_relay_lua_library[];
extern const size_t fs_relay_lua_library_len;

#define FS__TICK_MS 50

static fs_relay_config_t fs__cfg;

static void fs__usage(FILE *f)
{
    fprintf(f,
            "usage: flashsale-relay [--config FILE] [--help] [--version]\n"
            "\n"
            "Delivers every confirmed order from the Redis order streams fs:{launch:sku}:orders to a\n"
            "fulfillment endpoint: signed HTTPS POSTs, retried with backoff, dead-lettered when\n"
            "refused; several relays share the work through a Redis consumer group.\n"
            "\n"
            "  -c, --config FILE  read settings from an INI file (environment variables override it)\n"
            "  -h, --help         print this help and exit\n"
            "  -v, --version      print the version and exit\n"
            "\n"
            "Settings ([section] key, environment variable, default):\n");
    fs_relay_config_usage(f);
}

/* ---- shutdown ---- */

static void fs__close_cb(uv_handle_t *h)
{
    (void)h;
}

typedef struct {
    fs_relay_t r;
    uv_signal_t sigterm, sigint;
    uv_timer_t finish_timer;
} fs__main_t;

static fs__main_t fs__m;

/* Everything that is left is closed; uv_run returns once the handles are gone. */
static void fs__finish(fs_relay_t *r)
{
    if (r->stopping == 2) return;
    r->stopping = 2;
    fs_info("relay_closing", "held=%zu in_flight=%zu", fs_relay_jobs_held(r), fs_deliver_in_flight(r->deliver));
    uv_timer_stop(&r->force_timer);
    uv_timer_stop(&r->tick_timer);
    uv_timer_stop(&r->read_timer);
    uv_timer_stop(&r->dispatch_timer);
    uv_timer_stop(&r->ack_timer);
    if (r->http) fs_http_server_close(r->http);
    r->http = NULL;
    fs_deliver_close(r->deliver);
    fs_redis_close(r->writer);
    uv_handle_t *handles[] = {(uv_handle_t *)&r->force_timer, (uv_handle_t *)&r->tick_timer,
                              (uv_handle_t *)&r->read_timer, (uv_handle_t *)&r->dispatch_timer,
                              (uv_handle_t *)&r->ack_timer, (uv_handle_t *)&fs__m.sigterm,
                              (uv_handle_t *)&fs__m.sigint, (uv_handle_t *)&fs__m.finish_timer};
    for (size_t i = 0; i < sizeof handles / sizeof handles[0]; i++)
        if (!uv_is_closing(handles[i])) uv_close(handles[i], fs__close_cb);
}

static void fs__on_finish_timer(uv_timer_t *t)
{
    fs__finish(t->data);
}

void fs_relay_maybe_stopped(fs_relay_t *r)
{
    if (r->stopping != 1 || !fs_relay_jobs_quiet(r)) return;
    /* Never from inside a caller's callback: on the next loop turn. */
    fs__m.finish_timer.data = r;
    uv_timer_start(&fs__m.finish_timer, fs__on_finish_timer, 0, 0);
}

static void fs__on_force(uv_timer_t *t)
{
    fs_relay_t *r = t->data;
    fs_warn("shutdown_forced", "held=%zu in_flight=%zu", fs_relay_jobs_held(r),
            fs_deliver_in_flight(r->deliver));
    fs__finish(r);
}

static void fs__stop(fs_relay_t *r)
{
    if (r->stopping) {
        fs__on_force(&r->force_timer); /* a second signal: do not wait */
        return;
    }
    r->stopping = 1;
    fs_info("shutting_down", "timeout_ms=%d held=%zu in_flight=%zu", r->cfg->shutdown_timeout_ms,
            fs_relay_jobs_held(r), fs_deliver_in_flight(r->deliver));
    uv_timer_stop(&r->tick_timer);
    uv_timer_stop(&r->read_timer);
    /* Closing the reader unblocks its XREADGROUP on the Redis side before it takes anything. */
    fs_redis_close(r->reader);
    r->force_timer.data = r;
    uv_timer_start(&r->force_timer, fs__on_force, (uint64_t)r->cfg->shutdown_timeout_ms, 0);
    fs_relay_jobs_abandon(r);
    fs_relay_maybe_stopped(r);
}

static void fs__on_signal(uv_signal_t *s, int sig)
{
    fs__stop(s->data);
}

static void fs__on_tick(uv_timer_t *t)
{
    fs_relay_t *r = t->data;
    fs_relay_streams_tick(r, fs_mono_ns());
}

/* ---- setup ---- */

static void fs__split_secrets(fs_relay_t *r, const char *csv)
{
    for (const char *p = csv; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        r->secrets = fs_xrealloc(r->secrets, (r->nsecrets + 1) * sizeof *r->secrets);
        r->secret_lens = fs_xrealloc(r->secret_lens, (r->nsecrets + 1) * sizeof *r->secret_lens);
        r->secrets[r->nsecrets] = fs_xstrndup(p, n);
        r->secret_lens[r->nsecrets] = n;
        r->nsecrets++;
        p += n + (comma ? 1 : 0);
    }
}

static void fs__on_ready(int ready, void *arg)
{
    fs_relay_t *r = arg;
    if (ready) fs_relay_streams_kick(r);
}

static void fs__free_all(fs_relay_t *r)
{
    fs_relay_jobs_free(r);
    for (size_t i = 0; i < r->nskus; i++) {
        fs_relay_sku_t *k = r->skus[i];
        free(k->orders.key);
        free(k->replay.key);
        free(k->delivery_key);
        free(k->dead_key);
        free(k);
    }
    free(r->skus);
    for (size_t i = 0; i < r->nsecrets; i++) {
        OPENSSL_cleanse(r->secrets[i], r->secret_lens[i]);
        free(r->secrets[i]);
    }
    free(r->secrets);
    free(r->secret_lens);
    fs_secret_set_free(&r->admin_tokens);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"version", no_argument, NULL, 'v'},
                                         {NULL, 0, NULL, 0}};
    const char *config_path = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:hv", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; break;
        case 'h': fs__usage(stdout); return 0;
        case 'v': printf("flashsale-relay %s\n", FS_VERSION); return 0;
        default: fs__usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "flashsale-relay: unexpected argument %s\n", argv[optind]);
        fs__usage(stderr);
        return 2;
    }

    char err[512];
    fs_relay_config_defaults(&fs__cfg);
    if (fs_relay_config_load(&fs__cfg, config_path, err, sizeof err) ||
        fs_relay_config_validate(&fs__cfg, err, sizeof err)) {
        fprintf(stderr, "flashsale-relay: %s\n", err);
        return 1;
    }
    fs_log_set_level((fs_log_level_t)fs__cfg.log_level);

    fs_relay_target_t target;
    fs_relay_target_parse(fs__cfg.target, &target, err, sizeof err);
    char host[64];
    int port;
    fs_redis_url_t ru;
    fs_parse_hostport(fs__cfg.listen, host, sizeof host, &port);
    fs_redis_url_parse(fs__cfg.redis_url, &ru);
    fs_tls_ctx_t *redis_tls;
    if (fs_redis_tls_ctx(&ru, fs__cfg.redis_tls_ca_file, fs__cfg.redis_tls_cert_file,
                         fs__cfg.redis_tls_key_file, &redis_tls, err, sizeof err)) {
        fprintf(stderr, "flashsale-relay: redis: %s\n", err);
        return 1;
    }

    unsigned seed;
    fs_random_bytes(&seed, sizeof seed);
    srandom(seed);
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t loop;
    uv_loop_init(&loop);
    fs_relay_t *r = &fs__m.r;
    r->loop = &loop;
    r->cfg = &fs__cfg;
    if (fs__cfg.consumer[0]) {
        snprintf(r->consumer, sizeof r->consumer, "%s", fs__cfg.consumer);
    } else {
        char hn[128] = "relay";
        gethostname(hn, sizeof hn - 1);
        hn[sizeof hn - 1] = 0;
        snprintf(r->consumer, sizeof r->consumer, "%s-%d", hn, (int)getpid());
    }
    fs__split_secrets(r, fs__cfg.secret);
    fs_secret_set_add_csv(&r->admin_tokens, fs__cfg.admin_token);
    fs_relay_jobs_init(r);

    char ua[64];
    snprintf(ua, sizeof ua, "flashsale-relay/%s", FS_VERSION);
    fs_deliver_opts_t dopts = {.target = &target, .ca_file = fs__cfg.ca_file, .user_agent = ua,
                               .timeout_ms = fs__cfg.timeout_ms, .max_conns = fs__cfg.max_in_flight,
                               .idle_ms = 30000};
    if (fs_deliver_new(&loop, &dopts, &r->deliver, err, sizeof err)) {
        fprintf(stderr, "flashsale-relay: %s\n", err);
        fs__free_all(r);
        uv_loop_close(&loop);
        return 1;
    }
    fs_http_server_opts_t ho = {.host = host, .port = port, .idle_timeout_ms = 30000,
                                .max_header_bytes = 16384, .max_body_bytes = 16384,
                                .on_request = fs_relay_admin_handle, .user = r};
    if (fs_http_server_start(&r->http, &loop, &ho, err, sizeof err)) {
        fprintf(stderr, "flashsale-relay: %s\n", err);
        fs_deliver_close(r->deliver);
        uv_run(&loop, UV_RUN_DEFAULT);
        fs__free_all(r);
        uv_loop_close(&loop);
        return 1;
    }
    fs_redis_opts_t ro = {.host = ru.host, .port = ru.port, .db = ru.db, .user = ru.user,
                          .password = ru.password, .tls = redis_tls,
                          .timeout_ms = fs__cfg.redis_timeout_ms + fs__cfg.block_ms,
                          .library = fs_relay_lua_library, .library_len = fs_relay_lua_library_len,
                          .on_ready = fs__on_ready, .arg = r, .name = "relay-reader"};
    r->reader = fs_redis_new(&loop, &ro);
    ro.timeout_ms = fs__cfg.redis_timeout_ms;
    ro.name = "relay-writer";
    r->writer = fs_redis_new(&loop, &ro);

    uv_timer_t *timers[] = {&r->dispatch_timer, &r->ack_timer, &r->tick_timer, &r->read_timer,
                            &r->force_timer, &fs__m.finish_timer};
    for (size_t i = 0; i < sizeof timers / sizeof timers[0]; i++) {
        uv_timer_init(&loop, timers[i]);
        timers[i]->data = r;
    }
    uv_signal_init(&loop, &fs__m.sigterm);
    uv_signal_init(&loop, &fs__m.sigint);
    fs__m.sigterm.data = fs__m.sigint.data = r;
    uv_signal_start(&fs__m.sigterm, fs__on_signal, SIGTERM);
    uv_signal_start(&fs__m.sigint, fs__on_signal, SIGINT);
    fs_relay_streams_start(r);
    uv_timer_start(&r->tick_timer, fs__on_tick, 0, FS__TICK_MS);

    fs_info("listening", "addr=%s target=%s://%s:%d%s consumer=%s group=%s redis=%s:%d/%d "
                         "max_in_flight=%d max_attempts=%d version=%s",
            fs__cfg.listen, target.tls ? "https" : "http", target.host, target.port, target.path,
            r->consumer, fs__cfg.group, ru.host, ru.port, ru.db, fs__cfg.max_in_flight,
            fs__cfg.max_attempts, FS_VERSION);

    uv_run(&loop, UV_RUN_DEFAULT);
    fs__free_all(r);
    int rc = uv_loop_close(&loop);
    if (rc) fs_warn("loop_not_closed", "error=%s", uv_err_name(rc));
    fs_info("stopped", "delivered=%llu dead_lettered=%llu", (unsigned long long)r->metrics.delivered,
            (unsigned long long)(r->metrics.dead[0] + r->metrics.dead[1] + r->metrics.dead[2]));
    fs_relay_config_free(&fs__cfg);
    fs_tls_ctx_free(redis_tls);
    return 0;
}
