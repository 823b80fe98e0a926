/* The HTTP API of flashsale-server: routes, authentication, and the storefront, operator and
 * service handlers. JSON in, a stock call, JSON out.
 *
 * One fs_api_t per event loop. Requests get a per-request context (fs_api_ctx_t) allocated when
 * they arrive and freed when they are answered. */
#ifndef FS_API_H
#define FS_API_H

#include "../common/buf.h"
#include "../common/ids.h"
#include "../http/http.h"
#include "../stock/stock.h"
#include "flashsale/config.h"
#include "metrics.h"

#include <stdint.h>

/* Routes. The router tries them in this order (each request against those of its method first),
 * so the rush's come first (and /healthz, which load balancers ask often): a reservation used to
 * be compared with four admin routes before its own. Patterns never overlap, so the order changes
 * nothing else. */
typedef enum {
    FS_ROUTE_RESERVE,
    FS_ROUTE_CONFIRM,
    FS_ROUTE_CANCEL,
    FS_ROUTE_HEALTHZ,
    FS_ROUTE_GET_RESERVATION,
    FS_ROUTE_READYZ,
    FS_ROUTE_METRICS,
    FS_ROUTE_GET_LAUNCH,
    FS_ROUTE_ADMIN_PUT_LAUNCH,
    FS_ROUTE_ADMIN_GET_LAUNCH,
    FS_ROUTE_ADMIN_OPEN,
    FS_ROUTE_ADMIN_PAUSE,
    FS_ROUTE_ADMIN_CLOSE,
    FS_ROUTE_ADMIN_RESTOCK,
    /* operator tools (issue 7): audit.c, stats.c, orders.c, dashboard.c, admin.c (pause-all) */
    FS_ROUTE_ADMIN_LIST,
    FS_ROUTE_ADMIN_WHOAMI,
    FS_ROUTE_ADMIN_PAUSE_ALL,
    FS_ROUTE_ADMIN_STATS,
    FS_ROUTE_ADMIN_AUDIT,
    FS_ROUTE_ADMIN_ORDERS,
    FS_ROUTE_DASHBOARD,
    FS_ROUTE_DASHBOARD_JS,
    FS_ROUTE_DASHBOARD_CSS,
    FS_ROUTE_ADMIN_RATE_LIMIT, /* issue 5: PATCH .../rate_limit (admin.c) */
    FS_ROUTE_DASHBOARD_REDIRECT, /* GET /admin -> 308 /admin/ (dashboard.c) */
    FS_ROUTE__COUNT,
    FS_ROUTE_NONE = FS_ROUTE__COUNT /* metrics slot for 404/405 */
} fs_route_id_t;

typedef struct fs_api fs_api_t;

/* Who an operator token belongs to (parallel to fs_api_shared_t.admin_tokens.items). */
typedef struct {
    char name[65];
    int role; /* fs_role_t */
} fs_api_token_t;

/* What all loops share (read-only after start, except the metrics of each loop). */
typedef struct {
    fs_secret_set_t api_keys;
    fs_secret_set_t admin_tokens;
    fs_api_token_t *tokens; /* one per admin_tokens item; fs_api_tokens_init fills both */
    const char *shopper_secret; /* X-Shopper-Token's HMAC key; NULL or "" when tokens are off */
    fs_metrics_t **metrics; /* one per loop, for /metrics */
    int nloops;
} fs_api_shared_t;

fs_api_t *fs_api_new(fs_api_shared_t *shared, fs_metrics_t *metrics, fs_stock_t *stock);
/* Copies the Redis client's and the stock module's counters of this loop into its metrics block
 * (arg: the fs_api_t). Runs on the loop: when it serves /metrics and once a second (the stats
 * tick), so that /metrics, served by any loop, is never more than a second behind on the others. */
void fs_api_publish_metrics(void *api);
void fs_api_free(fs_api_t *api);
/* The fs_http_on_request callback; user is the fs_api_t. */
void fs_api_handle(fs_http_req_t *req, void *user);
/* Adds the operator tokens of cfg (admin_token as "admin", role operator, then [tokens]) to
 * shared->admin_tokens and shared->tokens; fs_api_tokens_free releases both. */
void fs_api_tokens_init(fs_api_shared_t *shared, const fs_config_t *cfg);
void fs_api_tokens_free(fs_api_shared_t *shared);
/* Prints the route table ("METHOD /path") to f. */
void fs_api_print_routes(void *f);

/* ---- shared by the handler files ---- */

typedef struct fs_api_ctx {
    fs_api_t *api;
    fs_http_req_t *req;
    fs_reserve_item_t item;
    char launch[FS_ID_MAX + 1], sku[FS_ID_MAX + 1];
    char user[FS_ID_MAX * 4 + 1];
    size_t user_len;
    char shopper[FS_ID_MAX + 1]; /* the user id of a verified X-Shopper-Token */
    size_t shopper_len;          /* 0: the request came with the API key, not a shopper token */
    char idem[256];
    char rid[FS_RID_MAX + 1];
    char payment_ref[257];
    size_t payment_ref_len;
    fs_buf_t out;
    fs_buf_t aux;   /* scratch for handlers (e.g. the audit "before"); reset per request */
    int token;      /* index of the operator token that authorized the request, -1 if none */
    int64_t arg;    /* a number a handler keeps across its Redis call (restock: delta) */
    int64_t rl[4];  /* rate limits to set (fs_stock_launch_rate_limit), when rl_set */
    int rl_set;
    /* waiting room (waiting_room.c, admin.c): the position and turn of the request's verified
     * X-Queue-Ticket (0: none); the launch's admit rate per 1000 s as last read (-1: unknown),
     * and the one a launch document sets, when wr_set */
    int64_t wr_pos, wr_turn_ms, wr_admit, wr_new;
    int wr_set;
    struct fs_api_ctx *next_free;
} fs_api_ctx_t;

struct fs_api {
    fs_api_shared_t *shared;
    fs_metrics_t *metrics;
    fs_stock_t *stock;
    struct fs_launch_cache *cache;
    struct fs_wr *wr;       /* waiting-room state of this loop (waiting_room.c); NULL until used */
    struct fs_stats *stats; /* per-launch reservation counters published to Redis (stats.h); may be NULL */
    fs_api_ctx_t *free_ctx; /* contexts of answered requests, reused: no allocation per request */
    size_t nfree;
};

/* A context for a new request, from the free list when there is one. */
fs_api_ctx_t *fs_api_ctx_get(fs_api_t *api, fs_http_req_t *req);
/* Gives a context back (after its request was answered). */
void fs_api_ctx_put(fs_api_ctx_t *c);
/* Answers with out's content as JSON and gives the context back. */
void fs_api_send(fs_api_ctx_t *c, int status, const char *extra_headers);
/* Answers {"error": code, "message": ...} and frees the context. 503s carry Retry-After. */
void fs_api_error(fs_api_ctx_t *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* 1 if the first element of the array reply r is the status string code ("ok", "not_found"...).
 * r must be an array with at least one element. */
int fs_api_reply_is(const redisReply *r, const char *code);
/* Answers a failed Redis call (err != 0 or an error reply) with 503 unavailable / 500. */
void fs_api_redis_failed(fs_api_ctx_t *c, redisReply *reply, int err);
/* Copies a path parameter holding a launch or SKU id; answers 400 and returns -1 if invalid. */
int fs_api_id_param(fs_api_ctx_t *c, int idx, char *out, const char *what);

void fs_api_storefront(fs_api_ctx_t *c, int route);
void fs_api_launch_cache_free(fs_api_t *api);
void fs_api_admin(fs_api_ctx_t *c, int route);
/* Writes the operator's view of a launch (the GET /admin/v1/launches/{launch} document). */
void fs_api_launch_json(fs_buf_t *o, const fs_launch_view_t *v);
/* A query parameter (raw, not percent-decoded): 1 and *out when present, else 0. */
int fs_api_query(const fs_api_ctx_t *c, const char *name, fs_str_t *out);
/* An integer query parameter in [min, max], def when absent; answers 400 naming it and returns -1
 * when it is not such an integer. */
int fs_api_query_int(fs_api_ctx_t *c, const char *name, long min, long max, long def, long *out);
/* The name of the operator token behind c ("-" when none). */
const char *fs_api_who(const fs_api_ctx_t *c);
void fs_api_stats(fs_api_ctx_t *c);                /* stats.c */
void fs_api_audit_get(fs_api_ctx_t *c);            /* audit.c */
void fs_api_orders(fs_api_ctx_t *c, int route);    /* orders.c: orders and the launch list */
void fs_api_dashboard(fs_api_ctx_t *c, int route); /* dashboard.c: the static page */

#endif
