/* flashsale-load: load generator and launch-day rehearsal tool (see docs/loadtest.md).
 *
 *   flashsale-load --url URL [-c N] [-d DURATION] [-t THREADS] [--rate R] ...     plain mode
 *   flashsale-load --campaign FILE --server URL [--redis URL] ...                  campaign mode
 *
 * Exit codes: 0 success, 1 a failed run or a failed verification, 2 a usage error. */
#include "campaign.h"
#include "plain.h"
#include "rate.h"
#include "report.h"
#include "shop.h"
#include "common/buf.h"
#include "common/log.h"
#include "flashsale/config.h"
#include "flashsale/error.h"
#include "flashsale/http_client.h"
#include "flashsale/version.h"

#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static const char fs__usage[] =
    "Usage:\n"
    "  flashsale-load --url URL [-c CONNECTIONS] [-d DURATION] [-t THREADS] [-R RATE] [options]\n"
    "  flashsale-load --campaign FILE --server URL [--redis URL] [options]\n"
    "\n"
    "Plain mode (like wrk): keep-alive GETs (or POSTs, --post) of URL.\n"
    "  -u, --url URL          http://host[:port]/path to load (https is not supported)\n"
    "  -c, --connections N    keep-alive connections (default 10)\n"
    "  -d, --duration D       how long to run: 10s, 500ms, 2m (default 10s; at most 24h)\n"
    "  -t, --threads N        load threads, each with its own event loop (default 2)\n"
    "  -R, --rate R           open loop: R arrivals per second in total (e.g. 20000 or 20k),\n"
    "                         latency measured from each arrival's intended send time; without\n"
    "                         it, closed loop: each connection sends again as soon as answered\n"
    "      --step D           open loop: wake at most once per D and send every arrival then\n"
    "                         due (default 100us; 0: wake for each arrival); the wait counts in\n"
    "                         latency\n"
    "      --warmup D         load for D first, at the same rate, without measuring it: the\n"
    "                         figures cover the -d that follows (default 0)\n"
    "  -H, --header 'N: V'    extra request header (repeatable)\n"
    "      --post BODY        POST BODY instead of GET; each {seq} in it becomes a number that\n"
    "                         changes from request to request (16384 values per thread), e.g.\n"
    "                         '{\"sku\":\"a\",\"user_id\":\"s{seq}\"}' for many shoppers\n"
    "      --timeout D        per-request timeout (default 5s); a timed-out connection is reopened\n"
    "\n"
    "Campaign mode: rehearse a launch described by an INI file (see docs/loadtest.md).\n"
    "      --campaign FILE    the campaign file\n"
    "      --server URL       the flashsale-server to drive, e.g. http://127.0.0.1:8080\n"
    "      --redis URL        Redis of that server, for verifying the order streams\n"
    "                         (default: $FLASHSALE_REDIS, else redis://127.0.0.1:6379/0)\n"
    "  -d, --duration D       override the campaign's [run] duration\n"
    "      --seed N           override the campaign's [run] seed\n"
    "      --no-verify        skip the verification (exit status then only reflects the run)\n"
    "  Credentials come from the environment, never from the command line:\n"
    "    FLASHSALE_ADMIN_TOKEN  operator token (creates and opens the launch, reads counters)\n"
    "    FLASHSALE_API_KEYS     storefront keys, comma-separated (connections use them in turn)\n"
    "  After the run it verifies the launch and prints PASS/FAIL per invariant:\n"
    "    counters add up, nothing oversold, no shopper above the limit, every confirmed order\n"
    "    exactly once in the streams, every order the tool was told about is in the streams.\n"
    "\n"
    "Both modes:\n"
    "      --json FILE        write the results as JSON (requests, duration_s, requests_per_sec,\n"
    "                         latency_ms {p50 p90 p99 p999 max}, status, timeline, and for\n"
    "                         campaigns skus and verification)\n"
    "      --html FILE        write a self-contained HTML report (charts, no network needed)\n"
    "      --allow-remote     allow targets other than 127.0.0.1 / ::1 / localhost\n"
    "  -q, --quiet            no progress line on stderr\n"
    "  -h, --help             this text\n"
    "  -V, --version          print the version\n"
    "\n"
    "Exit status: 0 success; 1 the run failed (nothing answered, or a verification FAIL);\n"
    "2 usage error (bad option, bad campaign file, missing credentials).\n";

__attribute__((format(printf, 1, 2))) static int fs__usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "flashsale-load: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'flashsale-load --help'.\n");
    return 2;
}

static int fs__int_arg(const char *s, int min, int max, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < min || v > max) return FS_EINVAL;
    *out = (int)v;
    return FS_OK;
}

static int fs__write_reports(json_t *doc, const char *json_path, const char *html_path)
{
    char err[512];
    int rc = 0;
    if (json_path && fs_report_write_json(doc, json_path, err, sizeof err)) {
        fprintf(stderr, "flashsale-load: %s\n", err);
        rc = 1;
    }
    if (html_path && fs_report_write_html(doc, html_path, err, sizeof err)) {
        fprintf(stderr, "flashsale-load: %s\n", err);
        rc = 1;
    }
    return rc;
}

/* Resolves a URL's host and enforces the loopback-only default. */
static int fs__target(const char *what, const char *url, int allow_remote, char *host, int *port,
                      char *path, struct sockaddr_storage *addr)
{
    if (fs_http_url_parse(url, host, port, path))
        return fs__usage_error("bad URL '%s' (expected http://host[:port][/path])", url);
    if (fs_http_resolve(host, *port, addr)) {
        fprintf(stderr, "flashsale-load: %s: cannot resolve host '%s'\n", what, host);
        return 2;
    }
    if (!allow_remote && !fs_http_addr_is_loopback(addr)) {
        fprintf(stderr, "flashsale-load: %s: %s is not a loopback address; pass --allow-remote to "
                        "load a remote target on purpose\n", what, host);
        return 2;
    }
    return 0;
}

/* Raises the soft limit of open files (often 1,024) to what n connections of `threads` event
 * loops need, as far as the hard limit allows; 0, or 2 with the reason on stderr when the hard
 * limit is lower: every connect past it would fail, and the run would measure that instead. */
static int fs__open_files_for(int n, int threads)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 0;
    rlim_t want = (rlim_t)n + 64 + 8 * (rlim_t)threads; /* loops, Redis, reports, stdio */
    if (rl.rlim_cur >= want) return 0;
    if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want) {
        struct rlimit up = {want, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0) return 0;
    }
    fprintf(stderr,
            "flashsale-load: %d connections need about %llu open files, and this process may "
            "have %llu (ulimit -Hn): use fewer connections or raise the hard limit\n",
            n, (unsigned long long)want,
            (unsigned long long)(rl.rlim_max == RLIM_INFINITY ? rl.rlim_cur : rl.rlim_max));
    return 2;
}

static int fs__plain_main(const char *url, int connections, int threads, double duration_s,
                          double warmup_s, double rate, double step_s, int timeout_ms,
                          const char *headers, const char *body, int allow_remote, int quiet,
                          const char *json_path, const char *html_path)
{
    char host[256], path[2048];
    int port;
    fs_plain_opts_t o = {0};
    int rc = fs__target("--url", url, allow_remote, host, &port, path, &o.addr);
    if (rc) return rc;
    char host_header[300];
    if (strchr(host, ':'))
        snprintf(host_header, sizeof host_header, "[%s]:%d", host, port);
    else
        snprintf(host_header, sizeof host_header, "%s:%d", host, port);
    o.host_header = host_header;
    o.path = path;
    o.headers = headers;
    o.body = body;
    const char *method = body ? "POST" : "GET";
    o.connections = connections;
    o.threads = threads > connections ? connections : threads;
    o.duration_s = duration_s;
    o.warmup_s = warmup_s;
    o.rate = rate;
    o.step_ns = (uint64_t)(step_s * 1e9 + 0.5);
    o.timeout_ms = timeout_ms;
    o.progress = !quiet;
    fs_plain_result_t res;
    char err[256];
    if (!quiet)
        fprintf(stderr, "flashsale-load: %s %s, %d connections, %d threads, %.1f s%s, %s\n", method,
                url, connections, o.threads, duration_s, warmup_s > 0 ? " after a warm-up" : "",
                rate > 0 ? "open loop" : "closed loop");
    if (fs_plain_run(&o, &res, err, sizeof err)) {
        fprintf(stderr, "flashsale-load: %s\n", err);
        fs_timeline_free(&res.timeline);
        return 1;
    }
    printf("flashsale-load %s: %s %s\n", FS_VERSION, method, url);
    printf("  %d connections, %d threads, %.2f s", connections, o.threads, duration_s);
    if (warmup_s > 0) printf(" after %.2f s of warm-up (not measured)", warmup_s);
    printf(", %s", rate > 0 ? "open loop" : "closed loop");
    if (rate > 0) printf(" at %.0f/s in steps of %.0f us", rate, step_s * 1e6);
    printf(", %llu TCP connections opened\n", (unsigned long long)res.connects);
    fs_report_print_stats(stdout, &res.stats, res.elapsed_s);
    json_t *doc = fs_report_base("plain", &res.stats, &res.timeline, res.elapsed_s);
    json_object_set_new(doc, "url", json_string(url));
    json_object_set_new(doc, "method", json_string(method));
    json_object_set_new(doc, "connections", json_integer(connections));
    json_object_set_new(doc, "threads", json_integer(o.threads));
    json_object_set_new(doc, "connections_opened", json_integer((json_int_t)res.connects));
    json_object_set_new(doc, "loop", json_string(rate > 0 ? "open" : "closed"));
    json_object_set_new(doc, "warmup_s", json_real(warmup_s));
    int ok = fs_stats_answered(&res.stats) > 0;
    if (rate > 0) {
        uint64_t sent = res.intended - res.missed;
        double held = res.intended ? (double)sent / (double)res.intended : 1.0;
        uint64_t answered = fs_stats_answered(&res.stats);
        double achieved = (double)answered / res.elapsed_s;
        int rate_held = held >= 0.98 && achieved >= 0.98 * rate * (res.elapsed_s - 0.05) / res.elapsed_s;
        json_object_set_new(doc, "target_rate", json_real(rate));
        json_object_set_new(doc, "step_us", json_real(step_s * 1e6));
        json_object_set_new(doc, "intended", json_integer((json_int_t)res.intended));
        json_object_set_new(doc, "missed", json_integer((json_int_t)res.missed));
        json_object_set_new(doc, "rate_held", json_boolean(rate_held));
        printf("  open loop    target %.0f/s: %llu arrivals due, %llu never sent (%.2f%% sent), "
               "achieved %.1f/s\n", rate, (unsigned long long)res.intended,
               (unsigned long long)res.missed, 100.0 * held, achieved);
        if (!rate_held)
            printf("  WARNING: the target rate was not held within 2%% (the server or the "
                   "connections are saturated: add -c, lower -R, or compare with closed loop)\n");
    }
    if (!ok) printf("  FAIL: no request was answered\n");
    rc = fs__write_reports(doc, json_path, html_path);
    json_decref(doc);
    fs_timeline_free(&res.timeline);
    return ok ? rc : 1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'u'},
        {"connections", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'},
        {"threads", required_argument, NULL, 't'},
        {"rate", required_argument, NULL, 'R'},
        {"step", required_argument, NULL, 'p'},
        {"warmup", required_argument, NULL, 'w'},
        {"header", required_argument, NULL, 'H'},
        {"post", required_argument, NULL, 'P'},
        {"timeout", required_argument, NULL, 'T'},
        {"campaign", required_argument, NULL, 'C'},
        {"server", required_argument, NULL, 'S'},
        {"redis", required_argument, NULL, 'r'},
        {"seed", required_argument, NULL, 's'},
        {"no-verify", no_argument, NULL, 'N'},
        {"json", required_argument, NULL, 'j'},
        {"html", required_argument, NULL, 'o'},
        {"allow-remote", no_argument, NULL, 'A'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *url = NULL, *campaign = NULL, *server = NULL, *redis = NULL;
    const char *json_path = NULL, *html_path = NULL, *body = NULL;
    int connections = 10, threads = 2, timeout_ms = 5000, allow_remote = 0, quiet = 0;
    int no_verify = 0, have_seed = 0, have_duration = 0, have_step = 0, have_warmup = 0;
    unsigned long long seed = 0;
    double duration_s = 10, rate = 0, step_s = 0.0001, warmup_s = 0;
    fs_buf_t headers;
    fs_buf_init(&headers);
    int c;
    while ((c = getopt_long(argc, argv, "u:c:d:t:R:H:qhV", opts, NULL)) != -1) {
        switch (c) {
        case 'u': url = optarg; break;
        case 'c':
            if (fs__int_arg(optarg, 1, 100000, &connections))
                return fs__usage_error("-c/--connections must be an integer from 1 to 100000, not '%s'", optarg);
            break;
        case 't':
            if (fs__int_arg(optarg, 1, 256, &threads))
                return fs__usage_error("-t/--threads must be an integer from 1 to 256, not '%s'", optarg);
            break;
        case 'd':
            if (fs_parse_duration(optarg, &duration_s) || duration_s < 0.1 || duration_s > 86400)
                return fs__usage_error("-d/--duration must be a duration from 100ms to 24h (e.g. 10s), not '%s'", optarg);
            have_duration = 1;
            break;
        case 'R':
            if (fs_parse_rate(optarg, &rate) || rate <= 0 || rate > 1e8)
                return fs__usage_error("-R/--rate must be a positive number of requests per second (e.g. 5000 or 5k), not '%s'", optarg);
            break;
        case 'p':
            if (fs_parse_duration(optarg, &step_s) || step_s > 0.01)
                return fs__usage_error("--step must be a duration from 0 to 10ms (e.g. 100us), not '%s'", optarg);
            have_step = 1;
            break;
        case 'w':
            if (fs_parse_duration(optarg, &warmup_s) || warmup_s > 3600)
                return fs__usage_error("--warmup must be a duration from 0 to 1h (e.g. 1s), not '%s'",
                                       optarg);
            have_warmup = 1;
            break;
        case 'T': {
            double t;
            if (fs_parse_duration(optarg, &t) || t < 0.001 || t > 3600)
                return fs__usage_error("--timeout must be a duration from 1ms to 1h, not '%s'", optarg);
            timeout_ms = (int)(t * 1000 + 0.5);
            break;
        }
        case 'H':
            if (!strchr(optarg, ':') || strpbrk(optarg, "\r\n"))
                return fs__usage_error("-H/--header must look like 'Name: value', not '%s'", optarg);
            fs_buf_puts(&headers, optarg);
            fs_buf_puts(&headers, "\r\n");
            break;
        case 'P': body = optarg; break;
        case 'C': campaign = optarg; break;
        case 'S': server = optarg; break;
        case 'r': redis = optarg; break;
        case 's': {
            char *end;
            seed = strtoull(optarg, &end, 10);
            if (end == optarg || *end) return fs__usage_error("--seed must be an integer, not '%s'", optarg);
            have_seed = 1;
            break;
        }
        case 'N': no_verify = 1; break;
        case 'j': json_path = optarg; break;
        case 'o': html_path = optarg; break;
        case 'A': allow_remote = 1; break;
        case 'q': quiet = 1; break;
        case 'h': fputs(fs__usage, stdout); return 0;
        case 'V': printf("flashsale-load %s\n", FS_VERSION); return 0;
        default: fprintf(stderr, "Try 'flashsale-load --help'.\n"); return 2;
        }
    }
    if (optind < argc) return fs__usage_error("unexpected argument '%s'", argv[optind]);
    signal(SIGPIPE, SIG_IGN);
    if (url && campaign) return fs__usage_error("%s", "--url and --campaign exclude each other");
    if (body && !url) return fs__usage_error("%s", "--post needs --url (plain mode)");
    if (have_step && (!url || rate <= 0))
        return fs__usage_error("%s", "--step needs --url and -R (plain mode, open loop)");
    if (have_warmup && !url)
        return fs__usage_error("%s", "--warmup needs --url (plain mode; a campaign has its own "
                                     "phases)");
    if (url) {
        int rc = fs__open_files_for(connections, threads > connections ? connections : threads);
        if (rc) {
            fs_buf_free(&headers);
            return rc;
        }
        rc = fs__plain_main(url, connections, threads, duration_s, warmup_s, rate, step_s,
                                timeout_ms, headers.len ? headers.data : NULL, body, allow_remote,
                                quiet, json_path, html_path);
        fs_buf_free(&headers);
        return rc;
    }
    if (!campaign) return fs__usage_error("%s", "give --url URL (plain mode) or --campaign FILE --server URL");
    if (!server) return fs__usage_error("%s", "--campaign needs --server URL");

    fs_campaign_t camp;
    char err[512];
    if (fs_campaign_load(&camp, campaign, err, sizeof err)) {
        fprintf(stderr, "flashsale-load: %s\n", err);
        return 2;
    }
    if (fs__open_files_for(camp.connections, 1)) {
        fs_campaign_free(&camp);
        return 2;
    }
    if (have_duration) camp.duration_s = duration_s;
    if (have_seed) camp.seed = seed;
    fs_shop_opts_t so = {.campaign = &camp, .timeout_ms = timeout_ms, .progress = !quiet,
                         .verify = !no_verify};
    char host[256], path[2048];
    int port;
    int rc = fs__target("--server", server, allow_remote, host, &port, path, &so.server);
    if (rc) {
        fs_campaign_free(&camp);
        return rc;
    }
    so.server_url = server;
    const char *rurl = redis ? redis : getenv("FLASHSALE_REDIS");
    if (!rurl || !*rurl) rurl = "redis://127.0.0.1:6379/0";
    fs_redis_url_t ru;
    if (fs_redis_url_parse(rurl, &ru)) {
        fs_campaign_free(&camp);
        /* not echoed: it may hold a password */
        return fs__usage_error("%s", "bad Redis URL (expected "
                                     "redis://[[user]:password@]host:port[/db])");
    }
    if (ru.tls && !no_verify) {
        fs_campaign_free(&camp);
        return fs__usage_error("%s", "the verification reads Redis without TLS: give a "
                                     "redis:// URL for it, or --no-verify");
    }
    snprintf(so.redis_host, sizeof so.redis_host, "%s", ru.host);
    snprintf(so.redis_user, sizeof so.redis_user, "%s", ru.user);
    snprintf(so.redis_password, sizeof so.redis_password, "%s", ru.password);
    so.redis_port = ru.port;
    so.redis_db = ru.db;
    struct sockaddr_storage raddr;
    if (!no_verify && (fs_http_resolve(so.redis_host, so.redis_port, &raddr) ||
                       (!allow_remote && !fs_http_addr_is_loopback(&raddr)))) {
        fprintf(stderr, "flashsale-load: --redis: %s is not a loopback address (or cannot be "
                        "resolved); pass --allow-remote to use it on purpose\n", so.redis_host);
        fs_campaign_free(&camp);
        return 2;
    }
    so.admin_token = getenv("FLASHSALE_ADMIN_TOKEN");
    so.api_keys = getenv("FLASHSALE_API_KEYS");
    if (!so.admin_token || !*so.admin_token) {
        fs_campaign_free(&camp);
        return fs__usage_error("%s", "campaign mode needs the operator token in FLASHSALE_ADMIN_TOKEN");
    }
    if (!so.api_keys || !*so.api_keys) {
        fs_campaign_free(&camp);
        return fs__usage_error("%s", "campaign mode needs storefront keys in FLASHSALE_API_KEYS");
    }
    json_t *doc = NULL;
    int passed = 0;
    rc = fs_shop_run(&so, &doc, &passed, err, sizeof err);
    if (rc) {
        fprintf(stderr, "flashsale-load: %s\n", err);
    }
    if (doc) {
        if (fs__write_reports(doc, json_path, html_path)) rc = rc ? rc : 1;
        json_decref(doc);
    }
    fs_campaign_free(&camp);
    fs_buf_free(&headers);
    if (rc) return 1;
    return passed ? 0 : 1;
}
