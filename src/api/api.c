/* Routing, authentication, responses and the service endpoints (see api.h). */
#include "api.h"
#include "stats.h"
#include "../common/log.h"
#include "../common/shopper_token.h"
#include "../common/timeutil.h"
#include "../http/router.h"
#include "flashsale/error.h"

#include <llhttp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* FS__AUTH_VIEW: any operator token (viewer or operator); FS__AUTH_ADMIN: role operator. */
typedef enum { FS__AUTH_NONE, FS__AUTH_API, FS__AUTH_VIEW, FS__AUTH_ADMIN } fs__auth_t;

static const fs_route_t fs__routes[FS_ROUTE__COUNT] = {
    [FS_ROUTE_HEALTHZ] = {HTTP_GET, "/healthz"},
    [FS_ROUTE_READYZ] = {HTTP_GET, "/readyz"},
    [FS_ROUTE_METRICS] = {HTTP_GET, "/metrics"},
    [FS_ROUTE_ADMIN_PUT_LAUNCH] = {HTTP_PUT, "/admin/v1/launches/{launch}"},
    [FS_ROUTE_ADMIN_GET_LAUNCH] = {HTTP_GET, "/admin/v1/launches/{launch}"},
    [FS_ROUTE_ADMIN_OPEN] = {HTTP_POST, "/admin/v1/launches/{launch}/open"},
    [FS_ROUTE_ADMIN_PAUSE] = {HTTP_POST, "/admin/v1/launches/{launch}/pause"},
    [FS_ROUTE_ADMIN_CLOSE] = {HTTP_POST, "/admin/v1/launches/{launch}/close"},
    [FS_ROUTE_ADMIN_RESTOCK] = {HTTP_POST, "/admin/v1/launches/{launch}/skus/{sku}/restock"},
    [FS_ROUTE_GET_LAUNCH] = {HTTP_GET, "/v1/launches/{launch}"},
    [FS_ROUTE_RESERVE] = {HTTP_POST, "/v1/launches/{launch}/reservations"},
    [FS_ROUTE_GET_RESERVATION] = {HTTP_GET, "/v1/reservations/{id}"},
    [FS_ROUTE_CONFIRM] = {HTTP_POST, "/v1/reservations/{id}/confirm"},
    [FS_ROUTE_CANCEL] = {HTTP_POST, "/v1/reservations/{id}/cancel"},
    [FS_ROUTE_ADMIN_LIST] = {HTTP_GET, "/admin/v1/launches"},
    [FS_ROUTE_ADMIN_WHOAMI] = {HTTP_GET, "/admin/v1/whoami"},
    [FS_ROUTE_ADMIN_PAUSE_ALL] = {HTTP_POST, "/admin/v1/pause-all"},
    [FS_ROUTE_ADMIN_STATS] = {HTTP_GET, "/admin/v1/launches/{launch}/stats"},
    [FS_ROUTE_ADMIN_AUDIT] = {HTTP_GET, "/admin/v1/launches/{launch}/audit"},
    [FS_ROUTE_ADMIN_ORDERS] = {HTTP_GET, "/admin/v1/launches/{launch}/orders"},
    [FS_ROUTE_DASHBOARD] = {HTTP_GET, "/admin/"},
    [FS_ROUTE_DASHBOARD_JS] = {HTTP_GET, "/admin/dashboard.js"},
    [FS_ROUTE_DASHBOARD_CSS] = {HTTP_GET, "/admin/dashboard.css"},
    [FS_ROUTE_ADMIN_RATE_LIMIT] = {HTTP_PATCH, "/admin/v1/launches/{launch}/rate_limit"},
    [FS_ROUTE_DASHBOARD_REDIRECT] = {HTTP_GET, "/admin"},
};

/* Metric label per route (and one for requests that matched none). */
static const char *const fs__route_names[FS_ROUTE__COUNT + 1] = {
    [FS_ROUTE_HEALTHZ] = "healthz",
    [FS_ROUTE_READYZ] = "readyz",
    [FS_ROUTE_METRICS] = "metrics",
    [FS_ROUTE_ADMIN_PUT_LAUNCH] = "admin_put_launch",
    [FS_ROUTE_ADMIN_GET_LAUNCH] = "admin_get_launch",
    [FS_ROUTE_ADMIN_OPEN] = "admin_open",
    [FS_ROUTE_ADMIN_PAUSE] = "admin_pause",
    [FS_ROUTE_ADMIN_CLOSE] = "admin_close",
    [FS_ROUTE_ADMIN_RESTOCK] = "admin_restock",
    [FS_ROUTE_GET_LAUNCH] = "get_launch",
    [FS_ROUTE_RESERVE] = "reserve",
    [FS_ROUTE_GET_RESERVATION] = "get_reservation",
    [FS_ROUTE_CONFIRM] = "confirm",
    [FS_ROUTE_CANCEL] = "cancel",
    [FS_ROUTE_ADMIN_LIST] = "admin_list",
    [FS_ROUTE_ADMIN_WHOAMI] = "admin_whoami",
    [FS_ROUTE_ADMIN_PAUSE_ALL] = "admin_pause_all",
    [FS_ROUTE_ADMIN_STATS] = "admin_stats",
    [FS_ROUTE_ADMIN_AUDIT] = "admin_audit",
    [FS_ROUTE_ADMIN_ORDERS] = "admin_orders",
    [FS_ROUTE_DASHBOARD] = "dashboard",
    [FS_ROUTE_DASHBOARD_JS] = "dashboard_js",
    [FS_ROUTE_DASHBOARD_CSS] = "dashboard_css",
    [FS_ROUTE_ADMIN_RATE_LIMIT] = "admin_rate_limit",
    [FS_ROUTE_DASHBOARD_REDIRECT] = "dashboard_redirect",
    [FS_ROUTE_NONE] = "none",
};

static fs__auth_t fs__route_auth(int route)
{
    switch (route) {
    case FS_ROUTE_HEALTHZ:
    case FS_ROUTE_READYZ:
    case FS_ROUTE_METRICS:
    case FS_ROUTE_DASHBOARD:
    case FS_ROUTE_DASHBOARD_JS:
    case FS_ROUTE_DASHBOARD_CSS:
    case FS_ROUTE_DASHBOARD_REDIRECT: return FS__AUTH_NONE;
    case FS_ROUTE_ADMIN_GET_LAUNCH:
    case FS_ROUTE_ADMIN_LIST:
    case FS_ROUTE_ADMIN_WHOAMI:
    case FS_ROUTE_ADMIN_STATS:
    case FS_ROUTE_ADMIN_AUDIT:
    case FS_ROUTE_ADMIN_ORDERS: return FS__AUTH_VIEW;
    case FS_ROUTE_ADMIN_PUT_LAUNCH:
    case FS_ROUTE_ADMIN_OPEN:
    case FS_ROUTE_ADMIN_PAUSE:
    case FS_ROUTE_ADMIN_CLOSE:
    case FS_ROUTE_ADMIN_RESTOCK:
    case FS_ROUTE_ADMIN_RATE_LIMIT:
    case FS_ROUTE_ADMIN_PAUSE_ALL: return FS__AUTH_ADMIN;
    default: return FS__AUTH_API;
    }
}

void fs_api_tokens_init(fs_api_shared_t *sh, const fs_config_t *cfg)
{
    fs_secret_set_add_csv(&sh->admin_tokens, cfg->admin_token);
    size_t n_admin = sh->admin_tokens.count;
    for (size_t i = 0; i < cfg->ntokens; i++)
        fs_secret_set_add_csv(&sh->admin_tokens, cfg->tokens[i].secret);
    fs_assert(sh->admin_tokens.count == n_admin + cfg->ntokens);
    sh->tokens = fs_xcalloc(sh->admin_tokens.count + 1, sizeof *sh->tokens);
    for (size_t i = 0; i < sh->admin_tokens.count; i++) {
        const char *name = i < n_admin ? "admin" : cfg->tokens[i - n_admin].name;
        snprintf(sh->tokens[i].name, sizeof sh->tokens[i].name, "%s", name);
        sh->tokens[i].role = i < n_admin ? FS_ROLE_OPERATOR : cfg->tokens[i - n_admin].role;
    }
}

void fs_api_tokens_free(fs_api_shared_t *sh)
{
    fs_secret_set_free(&sh->admin_tokens);
    free(sh->tokens);
    sh->tokens = NULL;
}

const char *fs_api_who(const fs_api_ctx_t *c)
{
    return c->token >= 0 ? c->api->shared->tokens[c->token].name : "-";
}

void fs_api_print_routes(void *f)
{
    for (int i = 0; i < FS_ROUTE__COUNT; i++)
        fprintf(f, "%s %s\n", llhttp_method_name((llhttp_method_t)fs__routes[i].method),
                fs__routes[i].pattern);
}

fs_api_t *fs_api_new(fs_api_shared_t *shared, fs_metrics_t *metrics, fs_stock_t *stock)
{
    fs_api_t *api = fs_xcalloc(1, sizeof *api);
    api->shared = shared;
    api->metrics = metrics;
    api->stock = stock;
    return api;
}

void fs_api_free(fs_api_t *api)
{
    while (api->free_ctx) {
        fs_api_ctx_t *c = api->free_ctx;
        api->free_ctx = c->next_free;
        fs_buf_free(&c->out);
        fs_buf_free(&c->aux);
        free(c);
    }
    fs_stats_free(api->stats);
    fs_api_launch_cache_free(api);
    free(api->cache);
    free(api);
}

#define FS__MAX_FREE_CTX 4096

fs_api_ctx_t *fs_api_ctx_get(fs_api_t *api, fs_http_req_t *req)
{
    fs_api_ctx_t *c = api->free_ctx;
    if (c) {
        api->free_ctx = c->next_free;
        api->nfree--;
        /* Only what a handler may read before writing it needs resetting. */
        memset(&c->item, 0, sizeof c->item);
        c->user_len = c->payment_ref_len = c->shopper_len = 0;
        c->rl_set = 0;
        fs_buf_reset(&c->out);
        fs_buf_reset(&c->aux);
    } else {
        c = fs_xcalloc(1, sizeof *c);
    }
    c->api = api;
    c->req = req;
    c->token = -1;
    return c;
}

void fs_api_ctx_put(fs_api_ctx_t *c)
{
    fs_api_t *api = c->api;
    if (api->nfree >= FS__MAX_FREE_CTX) {
        fs_buf_free(&c->out);
        fs_buf_free(&c->aux);
        free(c);
        return;
    }
    if (c->out.cap > 65536) fs_buf_free(&c->out); /* e.g. a /metrics page */
    if (c->aux.cap > 65536) fs_buf_free(&c->aux);
    c->next_free = api->free_ctx;
    api->free_ctx = c;
    api->nfree++;
}

void fs_api_send(fs_api_ctx_t *c, int status, const char *extra_headers)
{
    fs_http_req_t *req = c->req;
    uint64_t dur_ns = fs_mono_ns() - req->start_ns;
    fs_metrics_request(c->api->metrics, req->route >= 0 ? req->route : FS_ROUTE_NONE, status, dur_ns);
    if (req->route == FS_ROUTE_RESERVE && c->api->stats)
        fs_stats_reserve(c->api->stats, req->params[0].p, req->params[0].n,
                         c->item.launch ? (int)c->item.code : -1, status, dur_ns);
    fs_http_respond(req, status, extra_headers, NULL, c->out.data ? c->out.data : "", c->out.len);
    fs_api_ctx_put(c);
}

void fs_api_error(fs_api_ctx_t *c, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fs_json_error(&c->out, code, msg);
    fs_api_send(c, status, status == 503 ? "Retry-After: 1\r\n" : NULL);
}

int fs_api_reply_is(const redisReply *r, const char *code)
{
    size_t n;
    const char *s = fs_reply_str(r->element[0], &n);
    return n == strlen(code) && memcmp(s, code, n) == 0;
}

void fs_api_redis_failed(fs_api_ctx_t *c, redisReply *reply, int err)
{
    if (err) {
        fs_api_error(c, 503, "unavailable", "the stock service is unavailable (%s), retry shortly",
                     fs_strerror(err));
        return;
    }
    if (fs_redis_refused(reply)) {
        fs_api_error(c, 503, "unavailable",
                     "the stock service refuses changes for now, retry shortly");
        return;
    }
    char msg[300];
    fs_error("redis_unexpected_reply", "type=%d error=%s", reply->type,
             fs_log_quote(msg, sizeof msg, reply->type == REDIS_REPLY_ERROR ? reply->str : ""));
    fs_api_error(c, 500, "internal", "unexpected answer from the stock service");
}

int fs_api_id_param(fs_api_ctx_t *c, int idx, char *out, const char *what)
{
    fs_str_t p = c->req->params[idx];
    if (!fs_id_valid(p.p, p.n)) {
        fs_api_error(c, 400, "invalid_request",
                     "%s must be 1 to 128 characters of A-Z a-z 0-9 _ . ~ -", what);
        return -1;
    }
    memcpy(out, p.p, p.n);
    out[p.n] = 0;
    return 0;
}

int fs_api_query(const fs_api_ctx_t *c, const char *name, fs_str_t *out)
{
    fs_str_t q = c->req->query;
    size_t nl = strlen(name), i = 0;
    while (i < q.n) {
        size_t end = i;
        while (end < q.n && q.p[end] != '&') end++;
        if (end - i > nl && memcmp(q.p + i, name, nl) == 0 && q.p[i + nl] == '=') {
            out->p = q.p + i + nl + 1;
            out->n = end - i - nl - 1;
            return 1;
        }
        i = end + 1;
    }
    return 0;
}

int fs_api_query_int(fs_api_ctx_t *c, const char *name, long min, long max, long def, long *out)
{
    fs_str_t v;
    *out = def;
    if (!fs_api_query(c, name, &v)) return 0;
    long x = 0;
    int ok = v.n > 0 && v.n < 10;
    for (size_t i = 0; ok && i < v.n; i++) {
        ok = v.p[i] >= '0' && v.p[i] <= '9';
        x = x * 10 + (v.p[i] - '0');
    }
    if (!ok || x < min || x > max) {
        fs_api_error(c, 400, "invalid_request", "%s must be an integer from %ld to %ld", name, min, max);
        return -1;
    }
    *out = x;
    return 0;
}

/* Checks "Authorization: Bearer <token>" against the set: the index of the token, or -1. */
static int fs__authorized(fs_http_req_t *req, const fs_secret_set_t *set)
{
    fs_str_t h;
    if (!fs_http_req_header(req, "authorization", &h)) return -1;
    if (h.n < 7 || strncasecmp(h.p, "Bearer ", 7) != 0) return -1;
    const char *t = h.p + 7;
    size_t n = h.n - 7;
    while (n && *t == ' ') t++, n--;
    return n > 0 ? fs_secret_set_match(set, t, n) : -1;
}

/* A storefront call without a valid API key may carry X-Shopper-Token (when a shopper secret is
 * configured): 0 and c->shopper set when it verifies; otherwise answers 401 (saying why, never
 * repeating the token) and returns -1. */
static int fs__shopper_token(fs_api_ctx_t *c)
{
    const char *secret = c->api->shared->shopper_secret;
    fs_str_t t;
    if (!secret || !*secret || !fs_http_req_header(c->req, "x-shopper-token", &t)) {
        fs_buf_puts(&c->out, "{\"error\":\"unauthorized\",\"message\":\"missing or wrong credential (Authorization: Bearer ...)\"}");
        fs_api_send(c, 401, "WWW-Authenticate: Bearer\r\n");
        return -1;
    }
    int rc = fs_shopper_token_verify(secret, strlen(secret), t.p, t.n, (int64_t)time(NULL), c->shopper,
                                 &c->shopper_len, NULL);
    if (rc != FS_OK) {
        c->shopper_len = 0;
        fs_api_error(c, 401, "unauthorized", "%s", fs_shopper_token_strerror(rc));
        return -1;
    }
    return 0;
}

/* GET /admin/v1/whoami: the name and role of the caller's token. */
static void fs__whoami(fs_api_ctx_t *c)
{
    int first = 1;
    fs_buf_putc(&c->out, '{');
    fs_json_kv_cstr(&c->out, &first, "name", fs_api_who(c));
    fs_json_kv_cstr(&c->out, &first, "role", fs_role_name(c->api->shared->tokens[c->token].role));
    fs_buf_putc(&c->out, '}');
    fs_api_send(c, 200, NULL);
}

void fs_api_publish_metrics(void *arg)
{
    fs_api_t *api = arg;
    fs_redis_stats_t rs = fs_redis_stats(fs_stock_redis(api->stock));
    fs_metrics_t *m = api->metrics;
    atomic_store(&m->redis_commands, rs.commands);
    atomic_store(&m->redis_errors, rs.errors);
    atomic_store(&m->redis_timeouts, rs.timeouts);
    fs_stock_stats_t ss = fs_stock_stats(api->stock);
    atomic_store(&m->redis_reconnects, rs.reconnects + ss.sub_lost); /* the subscription's too */
    for (int i = 0; i < FS_RES__COUNT && i < FS_METRICS_OUTCOMES; i++)
        atomic_store(&m->reservations[i], ss.outcomes[i]);
    atomic_store(&m->sold_out_cached, ss.sold_out_cached);
    atomic_store(&m->reserve_batches, ss.batches);
    atomic_store(&m->reserve_batched, ss.batched_items);
    atomic_store(&m->reserve_rerouted, ss.rerouted);
}

/* ---- service endpoints ---- */

static void fs__service(fs_api_ctx_t *c, int route)
{
    fs_api_t *api = c->api;
    if (route == FS_ROUTE_HEALTHZ) {
        fs_buf_puts(&c->out, "{\"status\":\"ok\"}");
        fs_api_send(c, 200, NULL);
    } else if (route == FS_ROUTE_READYZ) {
        if (fs_http_req_draining(c->req)) { /* stopping: a load balancer should look elsewhere */
            fs_api_error(c, 503, "unavailable", "shutting down");
            return;
        }
        /* Ready when every event loop is: a request may land on any of them. */
        int ready = fs_redis_ready(fs_stock_redis(api->stock));
        for (int i = 0; ready && i < api->shared->nloops; i++)
            ready = atomic_load(&api->shared->metrics[i]->redis_connected) != 0;
        if (ready) {
            fs_buf_puts(&c->out, "{\"status\":\"ready\"}");
            fs_api_send(c, 200, NULL);
        } else {
            fs_api_error(c, 503, "unavailable", "not connected to Redis or the Lua library is not loaded");
        }
    } else {
        /* Before writing, bring this loop's block up to date (the others are, to the second). */
        fs_api_publish_metrics(api);
        const char *outcomes[FS_RES__COUNT + 1];
        for (int i = 0; i < FS_RES__COUNT; i++) outcomes[i] = fs_res_code_name((fs_res_code_t)i);
        outcomes[FS_RES__COUNT] = NULL;
        fs_metrics_write(&c->out, api->shared->metrics, api->shared->nloops, fs__route_names,
                         FS_ROUTE__COUNT + 1, outcomes);
        fs_http_req_t *req = c->req;
        fs_metrics_request(api->metrics, FS_ROUTE_METRICS, 200, fs_mono_ns() - req->start_ns);
        fs_http_respond(req, 200, NULL, "text/plain; version=0.0.4", c->out.data, c->out.len);
        fs_api_ctx_put(c);
    }
}

void fs_api_handle(fs_http_req_t *req, void *user)
{
    fs_api_t *api = user;
    fs_api_ctx_t *c = fs_api_ctx_get(api, req);
    req->app = c;
    req->start_ns = fs_mono_ns();
    char allow[64];
    int route = fs_router_match(fs__routes, FS_ROUTE__COUNT, req->method, req->path, req->params,
                                allow, sizeof allow);
    if (route < 0) {
        char hdr[96];
        int status = fs_router_refusal(route, allow, &c->out, hdr, sizeof hdr);
        fs_api_send(c, status, hdr[0] ? hdr : NULL);
        return;
    }
    req->route = route;
    fs__auth_t auth = fs__route_auth(route);
    if (auth == FS__AUTH_NONE) {
        if (route >= FS_ROUTE_DASHBOARD) fs_api_dashboard(c, route);
        else fs__service(c, route);
        return;
    }
    const fs_secret_set_t *set = auth == FS__AUTH_API ? &api->shared->api_keys : &api->shared->admin_tokens;
    int who = fs__authorized(req, set);
    if (who < 0 && auth == FS__AUTH_API) {
        if (fs__shopper_token(c)) return;
        who = 0;
    }
    if (who < 0) {
        fs_buf_puts(&c->out, "{\"error\":\"unauthorized\",\"message\":\"missing or wrong credential (Authorization: Bearer ...)\"}");
        fs_api_send(c, 401, "WWW-Authenticate: Bearer\r\n");
        return;
    }
    if (auth == FS__AUTH_API) {
        fs_api_storefront(c, route);
        return;
    }
    c->token = who;
    if (auth == FS__AUTH_ADMIN && api->shared->tokens[who].role != FS_ROLE_OPERATOR) {
        fs_api_error(c, 403, "forbidden", "token %s has role %s; this action needs role operator",
                     fs_api_who(c), fs_role_name(api->shared->tokens[who].role));
        return;
    }
    switch (route) {
    case FS_ROUTE_ADMIN_WHOAMI: fs__whoami(c); return;
    case FS_ROUTE_ADMIN_STATS: fs_api_stats(c); return;
    case FS_ROUTE_ADMIN_AUDIT: fs_api_audit_get(c); return;
    case FS_ROUTE_ADMIN_LIST:
    case FS_ROUTE_ADMIN_ORDERS: fs_api_orders(c, route); return;
    default: fs_api_admin(c, route); return;
    }
}
