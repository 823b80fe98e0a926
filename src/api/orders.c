/* Operator read-outs of Redis data: the recent orders of a launch from its SKUs' order streams
 * (GET /admin/v1/launches/{launch}/orders?sku=S&count=N) and the list of launches
 * (GET /admin/v1/launches). */
#include "api.h"
#include "../common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t ms, seq;
    char *json; /* the order as a JSON object */
} fs__order_t;

typedef struct {
    fs_api_ctx_t *c;
    long count;
    int pending, failed;
    fs__order_t *orders;
    size_t n, cap;
} fs__orders_job_t;

static int fs__order_cmp(const void *a, const void *b)
{
    const fs__order_t *x = a, *y = b;
    if (x->ms != y->ms) return x->ms < y->ms ? 1 : -1; /* newest first */
    if (x->seq != y->seq) return x->seq < y->seq ? 1 : -1;
    return 0;
}

/* One XREVRANGE entry [id, [field, value, ...]] as a JSON object. */
static void fs__add_entry(fs__orders_job_t *j, const redisReply *e)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[1]->type != REDIS_REPLY_ARRAY) return;
    size_t idl;
    const char *id = fs_reply_str(e->element[0], &idl);
    fs_buf_t b;
    fs_buf_init(&b);
    int first = 1;
    fs_buf_putc(&b, '{');
    fs_json_kv_str(&b, &first, "stream_id", id, idl);
    const redisReply *f = e->element[1];
    for (size_t k = 0; k + 1 < f->elements; k += 2) {
        size_t kl, vl;
        const char *key = fs_reply_str(f->element[k], &kl);
        const char *val = fs_reply_str(f->element[k + 1], &vl);
        char name[32];
        if (!kl || kl >= sizeof name) continue;
        memcpy(name, key, kl);
        name[kl] = 0;
        int ok = 0;
        int64_t v = fs_reply_i64(f->element[k + 1], &ok);
        if (ok && (strcmp(name, "qty") == 0 || strcmp(name, "price_cents") == 0))
            fs_json_kv_i64(&b, &first, name, v);
        else
            fs_json_kv_str(&b, &first, name, val, vl);
    }
    fs_buf_putc(&b, '}');
    fs_buf_putc(&b, 0);
    if (j->n == j->cap) {
        j->cap = j->cap ? j->cap * 2 : 64;
        j->orders = fs_xrealloc(j->orders, j->cap * sizeof *j->orders);
    }
    fs__order_t *o = &j->orders[j->n++];
    char *dash;
    o->ms = strtoull(id, &dash, 10);
    o->seq = *dash == '-' ? strtoull(dash + 1, NULL, 10) : 0;
    o->json = b.data;
}

static void fs__orders_finish(fs__orders_job_t *j)
{
    fs_api_ctx_t *c = j->c;
    if (!j->failed) {
        if (j->n) qsort(j->orders, j->n, sizeof *j->orders, fs__order_cmp);
        fs_buf_t *o = &c->out;
        int first = 1;
        fs_buf_putc(o, '{');
        fs_json_kv_cstr(o, &first, "launch", c->launch);
        fs_json_key(o, &first, "orders");
        fs_buf_putc(o, '[');
        for (size_t i = 0; i < j->n && i < (size_t)j->count; i++) {
            if (i) fs_buf_putc(o, ',');
            fs_buf_puts(o, j->orders[i].json);
        }
        fs_buf_puts(o, "]}");
    }
    for (size_t i = 0; i < j->n; i++) free(j->orders[i].json);
    free(j->orders);
    int failed = j->failed;
    free(j);
    if (failed) fs_api_error(c, 503, "unavailable", "the stock service is unavailable, retry shortly");
    else fs_api_send(c, 200, "Cache-Control: no-store\r\n");
}

static void fs__on_stream(redisReply *r, int err, void *arg)
{
    fs__orders_job_t *j = arg;
    if (err || r->type != REDIS_REPLY_ARRAY) j->failed = 1;
    else
        for (size_t i = 0; i < r->elements; i++) fs__add_entry(j, r->element[i]);
    if (--j->pending == 0) fs__orders_finish(j);
}

static void fs__read_stream(fs__orders_job_t *j, const char *sku)
{
    fs_api_ctx_t *c = j->c;
    char key[2 * FS_ID_MAX + 32], cnt[16];
    size_t kl = (size_t)snprintf(key, sizeof key, "fs:{%s:%s}:orders", c->launch, sku);
    const char *argv[] = {"XREVRANGE", key, "+", "-", "COUNT", cnt};
    size_t lens[] = {9, kl, 1, 1, 5, (size_t)snprintf(cnt, sizeof cnt, "%ld", j->count)};
    j->pending++;
    fs_stock_command(c->api->stock, fs__on_stream, j, 6, argv, lens);
}

static void fs__on_launch(redisReply *r, int err, void *arg)
{
    fs__orders_job_t *j = arg;
    fs_api_ctx_t *c = j->c;
    fs_launch_view_t v;
    if (err || r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
        free(j);
        fs_api_redis_failed(c, r, err);
        return;
    }
    if (fs_api_reply_is(r, "not_found")) {
        free(j);
        fs_api_error(c, 404, "not_found", "no such launch: %s", c->launch);
        return;
    }
    if (fs_launch_view_parse(r, &v)) {
        free(j);
        fs_api_redis_failed(c, r, 0);
        return;
    }
    j->pending = 1; /* held until every stream was asked (callbacks may fire synchronously) */
    for (size_t i = 0; i < v.nskus; i++) {
        char sku[FS_ID_MAX + 1];
        snprintf(sku, sizeof sku, "%.*s", (int)v.skus[i].sku_len, v.skus[i].sku);
        fs__read_stream(j, sku);
    }
    fs_launch_view_free(&v);
    if (--j->pending == 0) fs__orders_finish(j);
}

static void fs__on_list(redisReply *r, int err, void *arg)
{
    fs_api_ctx_t *c = arg;
    if (err || r->type != REDIS_REPLY_ARRAY) {
        fs_api_redis_failed(c, r, err);
        return;
    }
    /* sorted by id for a stable listing */
    const char **ids = fs_xcalloc(r->elements + 1, sizeof *ids);
    size_t n = 0;
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING) ids[n++] = r->element[i]->str;
    for (size_t i = 1; i < n; i++)
        for (size_t k = i; k > 0 && strcmp(ids[k - 1], ids[k]) > 0; k--) {
            const char *t = ids[k];
            ids[k] = ids[k - 1];
            ids[k - 1] = t;
        }
    fs_buf_puts(&c->out, "{\"launches\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) fs_buf_putc(&c->out, ',');
        fs_json_cstr(&c->out, ids[i]);
    }
    fs_buf_puts(&c->out, "]}");
    free(ids);
    fs_api_send(c, 200, "Cache-Control: no-store\r\n");
}

void fs_api_orders(fs_api_ctx_t *c, int route)
{
    if (route == FS_ROUTE_ADMIN_LIST) {
        const char *argv[] = {"SMEMBERS", "fs:launches"};
        size_t lens[] = {8, 11};
        fs_stock_command(c->api->stock, fs__on_list, c, 2, argv, lens);
        return;
    }
    long count;
    fs_str_t sku;
    if (fs_api_id_param(c, 0, c->launch, "launch") ||
        fs_api_query_int(c, "count", 1, 1000, 20, &count))
        return;
    int has_sku = fs_api_query(c, "sku", &sku);
    if (has_sku && !fs_id_valid(sku.p, sku.n)) {
        fs_api_error(c, 400, "invalid_request", "sku must be 1 to 128 characters of A-Z a-z 0-9 _ . ~ -");
        return;
    }
    fs__orders_job_t *j = fs_xcalloc(1, sizeof *j);
    j->c = c;
    j->count = count;
    if (has_sku) {
        memcpy(c->sku, sku.p, sku.n);
        c->sku[sku.n] = 0;
        j->pending = 1;
        fs__read_stream(j, c->sku);
        if (--j->pending == 0) fs__orders_finish(j);
        return;
    }
    fs_stock_launch_get(c->api->stock, c->launch, fs__on_launch, j);
}
