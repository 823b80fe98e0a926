/* Operator handlers: create/update a launch, read it, open/pause/close it, restock a SKU.
 * Launch documents are parsed with jansson (Debian's libjansson-dev): they are nested, small and
 * rare, unlike the storefront bodies on the rush path. */
#include "api.h"
#include "audit.h"
#include "json_in.h"
#include "waiting_room.h"
#include "../common/log.h"
#include "../common/timeutil.h"
#include "flashsale/error.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FS__MAX_SKUS 100
#define FS__MAX_STOCK 1000000000LL

/* Writes the operator's view of a launch. */
void fs_api_launch_json(fs_buf_t *o, const fs_launch_view_t *v)
{
    int first = 1;
    fs_buf_putc(o, '{');
    fs_json_kv_str(o, &first, "launch", v->launch, v->launch_len);
    fs_json_kv_str(o, &first, "name", v->name, v->name_len);
    fs_json_kv_str(o, &first, "state", v->state, v->state_len);
    fs_json_kv_i64(o, &first, "hold_seconds", v->hold_seconds);
    fs_json_kv_time(o, &first, "starts_at", v->starts_at_ms, 1);
    fs_json_kv_time(o, &first, "ends_at", v->ends_at_ms, 1);
    fs_json_key(o, &first, "skus");
    fs_buf_putc(o, '[');
    for (size_t i = 0; i < v->nskus; i++) {
        const fs_sku_view_t *s = &v->skus[i];
        int f = 1;
        if (i) fs_buf_putc(o, ',');
        fs_buf_putc(o, '{');
        fs_json_kv_str(o, &f, "sku", s->sku, s->sku_len);
        fs_json_kv_i64(o, &f, "total", s->total);
        fs_json_kv_i64(o, &f, "available", s->available);
        fs_json_kv_i64(o, &f, "held", s->held);
        fs_json_kv_i64(o, &f, "sold", s->sold);
        fs_json_kv_i64(o, &f, "per_user_limit", s->per_user_limit);
        fs_json_kv_i64(o, &f, "price_cents", s->price_cents);
        fs_buf_putc(o, '}');
    }
    fs_buf_puts(o, "],\"rate_limit\":{");
    /* Rates are kept in requests per 1000 s: shown with up to three decimals. */
    fs_buf_printf(o, "\"shopper_per_sec\":%lld.%03lld,\"shopper_burst\":%lld,"
                     "\"address_per_sec\":%lld.%03lld,\"address_burst\":%lld}}",
                  (long long)(v->rl[0] / 1000), (long long)(v->rl[0] % 1000), (long long)v->rl[1],
                  (long long)(v->rl[2] / 1000), (long long)(v->rl[2] % 1000), (long long)v->rl[3]);
}

/* Reads a rate_limit object ({"shopper_per_sec", "shopper_burst", "address_per_sec",
 * "address_burst"}, each optional: a missing one keeps its value) into c->rl (-1 = keep).
 * Answers 400 and returns -1 when it is malformed. */
static int fs__parse_rate_limit(fs_api_ctx_t *c, json_t *o, const char *where)
{
    static const char *const names[4] = {"shopper_per_sec", "shopper_burst", "address_per_sec",
                                          "address_burst"};
    if (!json_is_object(o)) {
        fs_api_error(c, 400, "invalid_request", "%s must be an object with shopper_per_sec, "
                     "shopper_burst, address_per_sec, address_burst", where);
        return -1;
    }
    int any = 0;
    for (int i = 0; i < 4; i++) {
        json_t *v = json_object_get(o, names[i]);
        c->rl[i] = -1;
        if (!v) continue;
        any = 1;
        if (i % 2 == 0) {
            double r = json_is_number(v) ? json_number_value(v) : -1;
            if (r < 0 || r > 1000000) {
                fs_api_error(c, 400, "invalid_request",
                             "%s.%s must be a number from 0 to 1000000 (0 turns the limit off)",
                             where, names[i]);
                return -1;
            }
            c->rl[i] = (int64_t)(r * 1000 + 0.5);
        } else {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000) {
                fs_api_error(c, 400, "invalid_request",
                             "%s.%s must be an integer from 0 to 1000000 (0 turns the limit off)",
                             where, names[i]);
                return -1;
            }
            c->rl[i] = json_integer_value(v);
        }
    }
    if (!any) {
        fs_api_error(c, 400, "invalid_request", "%s names none of shopper_per_sec, shopper_burst, "
                     "address_per_sec, address_burst", where);
        return -1;
    }
    c->rl_set = 1;
    return 0;
}

/* ---- the waiting room setting (waiting_room.h) ---- */

/* Reads a waiting_room value (null = no room, or {"admit_per_sec": N}) into c->wr_new (shoppers
 * per 1000 s). Answers 400 and returns -1 when it is malformed. */
static int fs__parse_waiting_room(fs_api_ctx_t *c, json_t *o)
{
    json_t *v = json_is_object(o) ? json_object_get(o, "admit_per_sec") : NULL;
    double r = v && json_is_number(v) ? json_number_value(v) : -1;
    if (!json_is_null(o) && (r < 0 || r > 1000000)) {
        fs_api_error(c, 400, "invalid_request", "waiting_room must be null or an object with "
                     "admit_per_sec, a number from 0 to 1000000 (0 or null: no waiting room)");
        return -1;
    }
    c->wr_new = json_is_null(o) ? 0 : (int64_t)(r * 1000 + 0.5);
    c->wr_set = 1;
    return 0;
}

/* The room's setting, read just before the launch on the same connection (so its answer comes
 * first), kept in c->wr_admit for the launch JSON; a launch not created yet has none. */
static void fs__on_wr_read(redisReply *r, int err, void *arg)
{
    fs_api_ctx_t *c = arg;
    c->wr_admit = -1;
    if (err || r->type != REDIS_REPLY_ARRAY || r->elements < 1) return;
    if (fs_api_reply_is(r, "not_found")) c->wr_admit = 0;
    else if (fs_api_reply_is(r, "ok") && r->elements == 2)
        c->wr_admit = fs_reply_i64(r->element[1], NULL);
}

static void fs__wr_read(fs_api_ctx_t *c)
{
    c->wr_admit = -1;
    fs_api_waiting_room_setting(c->api, c->launch, -1, fs__on_wr_read, c);
}

static void fs__on_wr_set(redisReply *r, int err, void *arg);

/* ---- audit: every change that took effect is recorded (audit.h) before it is answered ---- */

static const char *fs__action(int route)
{
    switch (route) {
    case FS_ROUTE_ADMIN_PUT_LAUNCH: return "put";
    case FS_ROUTE_ADMIN_OPEN: return "open";
    case FS_ROUTE_ADMIN_PAUSE: return "pause";
    case FS_ROUTE_ADMIN_CLOSE: return "close";
    case FS_ROUTE_ADMIN_RESTOCK: return "restock";
    case FS_ROUTE_ADMIN_RATE_LIMIT: return "rate_limit";
    default: return "pause-all";
    }
}

static void fs__audited(redisReply *r, int err, void *arg)
{
    fs_api_ctx_t *c = arg;
    if (err || r->type == REDIS_REPLY_ERROR)
        fs_warn("audit_write_failed", "launch=%s action=%s error=%s", c->launch,
                fs__action(c->req->route), err ? fs_strerror(err) : "reply");
    fs_api_send(c, 200, NULL);
}

/* Records c's action (before: c->aux, after: c->out) and answers 200 with c->out afterwards. */
static void fs__audit_and_send(fs_api_ctx_t *c, const char *detail)
{
    const fs_api_token_t *t = &c->api->shared->tokens[c->token];
    fs_audit_entry_t e = {.launch = c->launch, .action = fs__action(c->req->route), .who = t->name,
                          .role = fs_role_name(t->role),
                          .sku = c->req->route == FS_ROUTE_ADMIN_RESTOCK ? c->sku : NULL,
                          .before = c->aux.data, .before_len = c->aux.len,
                          .after = c->out.data, .after_len = c->out.len, .detail = detail};
    fs_audit_write(c->api->stock, &e, fs__audited, c);
}

/* Common answer of put/get/state: ["ok", created, launch...] or an error code. */
static void fs__on_launch_reply(redisReply *r, int err, void *arg)
{
    fs_api_ctx_t *c = arg;
    if (err || r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
        fs_api_redis_failed(c, r, err);
        return;
    }
    if (fs_api_reply_is(r, "not_found")) {
        fs_api_error(c, 404, "not_found", "no such launch: %s", c->launch);
        return;
    }
    if (fs_api_reply_is(r, "use_restock")) {
        size_t n;
        const char *sku = r->elements > 1 ? fs_reply_str(r->element[1], &n) : (n = 0, "");
        fs_api_error(c, 409, "use_restock",
                     "the stock of existing SKU %.*s cannot change here; use the restock endpoint",
                     (int)n, sku);
        return;
    }
    if (fs_api_reply_is(r, "stock_required")) {
        size_t n;
        const char *sku = r->elements > 1 ? fs_reply_str(r->element[1], &n) : (n = 0, "");
        fs_api_error(c, 400, "invalid_request", "skus: stock is required for the new SKU %.*s",
                     (int)n, sku);
        return;
    }
    if (fs_api_reply_is(r, "invalid_transition")) {
        size_t n;
        const char *state = r->elements > 1 ? fs_reply_str(r->element[1], &n) : (n = 0, "");
        const char *what = c->req->route == FS_ROUTE_ADMIN_OPEN    ? "open"
                           : c->req->route == FS_ROUTE_ADMIN_PAUSE ? "pause"
                                                                   : "close";
        fs_api_error(c, 409, "invalid_transition", "cannot %s a launch that is %.*s", what, (int)n,
                     state);
        return;
    }
    fs_launch_view_t v;
    if (!fs_api_reply_is(r, "ok") || fs_launch_view_parse(r, &v)) {
        fs_api_redis_failed(c, r, 0);
        return;
    }
    if (c->req->route == FS_ROUTE_ADMIN_PUT_LAUNCH && c->rl_set) {
        /* The document also set rate limits: apply them, then answer with the result. */
        fs_launch_view_free(&v);
        c->rl_set = 0;
        fs_stock_launch_rate_limit(c->api->stock, c->launch, c->rl, fs__on_launch_reply, c);
        return;
    }
    if (c->req->route == FS_ROUTE_ADMIN_PUT_LAUNCH && c->wr_set) {
        /* ... and the waiting room: set it, then read the launch again for the answer. */
        fs_launch_view_free(&v);
        c->wr_set = 0;
        fs_api_waiting_room_setting(c->api, c->launch, c->wr_new, fs__on_wr_set, c);
        return;
    }
    fs_api_launch_json(&c->out, &v);
    fs_api_waiting_room_json(&c->out, c->wr_admit);
    if (c->req->route == FS_ROUTE_ADMIN_OPEN) {
        for (size_t i = 0; i < v.nskus; i++) {
            char sku[FS_ID_MAX + 1];
            snprintf(sku, sizeof sku, "%.*s", (int)v.skus[i].sku_len, v.skus[i].sku);
            fs_stock_units_back(c->api->stock, c->launch, sku);
        }
    }
    fs_launch_view_free(&v);
    if (c->req->route != FS_ROUTE_ADMIN_GET_LAUNCH) {
        fs_info("launch_changed", "launch=%s by=%s action=%s state=%.*s", c->launch, fs_api_who(c),
                fs__action(c->req->route),
                (int)v.state_len, v.state);
        fs__audit_and_send(c, NULL);
        return;
    }
    fs_api_send(c, 200, NULL);
}

static void fs__on_wr_set(redisReply *r, int err, void *arg)
{
    fs_api_ctx_t *c = arg;
    if (err || r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !fs_api_reply_is(r, "ok")) {
        fs_api_redis_failed(c, r, err);
        return;
    }
    c->wr_admit = fs_reply_i64(r->element[1], NULL);
    fs_stock_launch_get(c->api->stock, c->launch, fs__on_launch_reply, c);
}

/* ---- PUT /admin/v1/launches/{launch} ---- */

static int fs__int_field(fs_api_ctx_t *c, json_t *obj, const char *field, const char *where,
                         long long min, long long max, int64_t *out)
{
    json_t *v = json_object_get(obj, field);
    if (!v || !json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        fs_api_error(c, 400, "invalid_request", "%s%s must be an integer from %lld to %lld", where,
                     field, min, max);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

static int fs__time_field(fs_api_ctx_t *c, json_t *doc, const char *field, int64_t *out)
{
    json_t *v = json_object_get(doc, field);
    *out = 0;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v) ||
        fs_time_parse_rfc3339(json_string_value(v), json_string_length(v), out) || *out <= 0) {
        fs_api_error(c, 400, "invalid_request",
                     "%s must be an RFC 3339 date-time such as 2026-11-27T10:00:00Z, or null", field);
        return -1;
    }
    return 0;
}

static void fs__put_launch(fs_api_ctx_t *c)
{
    c->wr_set = 0;
    json_error_t jerr;
    json_t *doc = json_loadb(c->req->body, c->req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc || !json_is_object(doc)) {
        fs_api_error(c, 400, "invalid_request", "the body must be a JSON object%s%s",
                     doc ? "" : ": ", doc ? "" : jerr.text);
        json_decref(doc);
        return;
    }
    fs_launch_def_t def = {.launch = c->launch};
    fs_sku_def_t skus[FS__MAX_SKUS];
    json_t *name = json_object_get(doc, "name");
    json_t *list = json_object_get(doc, "skus");
    if (!name || !json_is_string(name) || json_string_length(name) < 1 ||
        json_string_length(name) > 200 || strlen(json_string_value(name)) != json_string_length(name)) {
        fs_api_error(c, 400, "invalid_request", "name must be a string of 1 to 200 bytes");
        goto out;
    }
    def.name = json_string_value(name);
    if (fs__int_field(c, doc, "hold_seconds", "", 1, 86400, &def.hold_seconds) ||
        fs__time_field(c, doc, "starts_at", &def.starts_at_ms) ||
        fs__time_field(c, doc, "ends_at", &def.ends_at_ms))
        goto out;
    if (def.starts_at_ms && def.ends_at_ms && def.ends_at_ms <= def.starts_at_ms) {
        fs_api_error(c, 400, "invalid_request", "ends_at must be later than starts_at");
        goto out;
    }
    if (!list || !json_is_array(list) || json_array_size(list) < 1 ||
        json_array_size(list) > FS__MAX_SKUS) {
        fs_api_error(c, 400, "invalid_request", "skus must be an array of 1 to %d SKUs", FS__MAX_SKUS);
        goto out;
    }
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *s = json_array_get(list, i);
        char where[32];
        snprintf(where, sizeof where, "skus[%zu].", i);
        json_t *id = json_object_get(s, "sku");
        if (!json_is_object(s) || !id || !json_is_string(id) ||
            !fs_id_valid(json_string_value(id), json_string_length(id))) {
            fs_api_error(c, 400, "invalid_request",
                         "%ssku must be 1 to 128 characters of A-Z a-z 0-9 _ . ~ -", where);
            goto out;
        }
        fs_sku_def_t *d = &skus[i];
        d->sku = json_string_value(id);
        for (size_t k = 0; k < i; k++)
            if (strcmp(skus[k].sku, d->sku) == 0) {
                fs_api_error(c, 400, "invalid_request", "%ssku %s appears twice", where, d->sku);
                goto out;
            }
        /* stock may be left out for an existing SKU (its stock cannot change here anyway) */
        d->stock = -1;
        if ((json_object_get(s, "stock") && fs__int_field(c, s, "stock", where, 0, FS__MAX_STOCK, &d->stock)) ||
            fs__int_field(c, s, "per_user_limit", where, 1, 1000000, &d->per_user_limit) ||
            fs__int_field(c, s, "price_cents", where, 0, 1000000000000LL, &d->price_cents))
            goto out;
    }
    json_t *rl = json_object_get(doc, "rate_limit");
    if (rl && !json_is_null(rl) && fs__parse_rate_limit(c, rl, "rate_limit")) goto out;
    json_t *wroom = json_object_get(doc, "waiting_room");
    if (wroom && fs__parse_waiting_room(c, wroom)) goto out;
    def.skus = skus;
    def.nskus = json_array_size(list);
    /* The strings point into doc; the stock call copies them before returning. */
    fs_stock_launch_put(c->api->stock, &def, fs__on_launch_reply, c);
out:
    json_decref(doc);
}

/* ---- restock ---- */

static void fs__on_restocked(redisReply *r, int err, void *arg)
{
    fs_api_ctx_t *c = arg;
    if (err || r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
        fs_api_redis_failed(c, r, err);
        return;
    }
    if (fs_api_reply_is(r, "not_found")) {
        fs_api_error(c, 404, "not_found", "no such launch or SKU");
        return;
    }
    if (fs_api_reply_is(r, "insufficient_available")) {
        fs_api_error(c, 409, "insufficient_available",
                     "fewer units are available than the restock would remove");
        return;
    }
    if (!fs_api_reply_is(r, "ok") || r->elements < 5) {
        fs_api_redis_failed(c, r, 0);
        return;
    }
    int first = 1;
    fs_buf_t *o = &c->out;
    fs_buf_putc(o, '{');
    fs_json_kv_cstr(o, &first, "launch", c->launch);
    fs_json_kv_cstr(o, &first, "sku", c->sku);
    fs_json_kv_i64(o, &first, "total", fs_reply_i64(r->element[1], NULL));
    fs_json_kv_i64(o, &first, "available", fs_reply_i64(r->element[2], NULL));
    fs_json_kv_i64(o, &first, "held", fs_reply_i64(r->element[3], NULL));
    fs_json_kv_i64(o, &first, "sold", fs_reply_i64(r->element[4], NULL));
    fs_buf_putc(o, '}');
    fs_stock_units_back(c->api->stock, c->launch, c->sku);
    /* before, from the answer: a restock changes total and available by delta, nothing else */
    int64_t delta = c->arg;
    int bf = 1;
    fs_buf_reset(&c->aux);
    fs_buf_putc(&c->aux, '{');
    fs_json_kv_i64(&c->aux, &bf, "total", fs_reply_i64(r->element[1], NULL) - delta);
    fs_json_kv_i64(&c->aux, &bf, "available", fs_reply_i64(r->element[2], NULL) - delta);
    fs_json_kv_i64(&c->aux, &bf, "held", fs_reply_i64(r->element[3], NULL));
    fs_json_kv_i64(&c->aux, &bf, "sold", fs_reply_i64(r->element[4], NULL));
    fs_buf_putc(&c->aux, '}');
    char detail[48];
    snprintf(detail, sizeof detail, "{\"delta\":%lld}", (long long)delta);
    fs_info("restocked", "launch=%s sku=%s by=%s delta=%lld", c->launch, c->sku, fs_api_who(c),
            (long long)delta);
    fs__audit_and_send(c, detail);
}

static void fs__restock(fs_api_ctx_t *c)
{
    if (fs_api_id_param(c, 1, c->sku, "sku")) return;
    fs_json_doc_t d;
    int64_t delta;
    if (fs_json_parse(&d, c->req->body, c->req->body_len)) {
        fs_api_error(c, 400, "invalid_request", "the body must be a JSON object");
        return;
    }
    int t = fs_json_find(&d, 0, "delta");
    if (t < 0 || fs_json_int(&d, t, &delta) || delta == 0 || delta > FS__MAX_STOCK ||
        delta < -FS__MAX_STOCK) {
        fs_api_error(c, 400, "invalid_request",
                     "delta must be a non-zero integer from -%lld to %lld", FS__MAX_STOCK,
                     FS__MAX_STOCK);
        return;
    }
    c->arg = delta;
    fs_stock_restock(c->api->stock, c->launch, c->sku, delta, fs__on_restocked, c);
}

/* ---- the launch before a change (for the audit record), then the change ---- */

static void fs__on_before(redisReply *r, int err, void *arg)
{
    fs_api_ctx_t *c = arg;
    int route = c->req->route;
    if (err || r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
        fs_api_redis_failed(c, r, err);
        return;
    }
    if (fs_api_reply_is(r, "not_found")) {
        if (route != FS_ROUTE_ADMIN_PUT_LAUNCH) {
            fs_api_error(c, 404, "not_found", "no such launch: %s", c->launch);
            return;
        }
    } else {
        fs_launch_view_t v;
        if (fs_launch_view_parse(r, &v)) {
            fs_api_redis_failed(c, r, 0);
            return;
        }
        fs_api_launch_json(&c->aux, &v);
        fs_api_waiting_room_json(&c->aux, c->wr_admit);
        fs_launch_view_free(&v);
    }
    if (route == FS_ROUTE_ADMIN_PUT_LAUNCH) fs__put_launch(c);
    else if (route == FS_ROUTE_ADMIN_RATE_LIMIT)
        fs_stock_launch_rate_limit(c->api->stock, c->launch, c->rl, fs__on_launch_reply, c);
    else fs_stock_launch_state(c->api->stock, c->launch, fs__action(route), fs__on_launch_reply, c);
}

/* ---- POST /admin/v1/pause-all: pause every launch that is open, one after the other ---- */

typedef struct {
    fs_api_ctx_t *c;
    char **ids;
    size_t n, i;
    fs_buf_t paused, failed; /* JSON arrays' contents */
    int npaused, nfailed;
} fs__pause_all_t;

static void fs__pause_all_next(fs__pause_all_t *p);

static void fs__pause_all_failed(fs__pause_all_t *p)
{
    /* Redis failed: the rest is not attempted (and reported), no retry storm on a dead link. */
    for (; p->i < p->n; p->i++) {
        if (p->nfailed++) fs_buf_putc(&p->failed, ',');
        fs_json_cstr(&p->failed, p->ids[p->i]);
    }
    fs__pause_all_next(p);
}

static void fs__pause_all_audited(redisReply *r, int err, void *arg)
{
    fs__pause_all_t *p = arg;
    if (err || r->type == REDIS_REPLY_ERROR)
        fs_warn("audit_write_failed", "launch=%s action=pause-all error=%s", p->ids[p->i],
                err ? fs_strerror(err) : "reply");
    if (p->npaused++) fs_buf_putc(&p->paused, ',');
    fs_json_cstr(&p->paused, p->ids[p->i]);
    p->i++;
    fs__pause_all_next(p);
}

static void fs__pause_all_paused(redisReply *r, int err, void *arg)
{
    fs__pause_all_t *p = arg;
    fs_api_ctx_t *c = p->c;
    fs_launch_view_t v;
    if (err || r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
        fs__pause_all_failed(p);
        return;
    }
    if (!fs_api_reply_is(r, "ok") || fs_launch_view_parse(r, &v)) {
        p->i++; /* closed or deleted meanwhile: nothing to pause */
        fs__pause_all_next(p);
        return;
    }
    fs_buf_reset(&c->out);
    fs_api_launch_json(&c->out, &v);
    fs_launch_view_free(&v);
    fs_info("launch_changed", "launch=%s by=%s action=pause-all state=paused", p->ids[p->i],
            fs_api_who(c));
    const fs_api_token_t *t = &c->api->shared->tokens[c->token];
    fs_audit_entry_t e = {.launch = p->ids[p->i], .action = "pause-all", .who = t->name,
                          .role = fs_role_name(t->role), .before = c->aux.data,
                          .before_len = c->aux.len, .after = c->out.data, .after_len = c->out.len};
    fs_audit_write(c->api->stock, &e, fs__pause_all_audited, p);
}

static void fs__pause_all_got(redisReply *r, int err, void *arg)
{
    fs__pause_all_t *p = arg;
    fs_api_ctx_t *c = p->c;
    fs_launch_view_t v;
    if (err || r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
        fs__pause_all_failed(p);
        return;
    }
    if (!fs_api_reply_is(r, "ok") || fs_launch_view_parse(r, &v)) {
        p->i++;
        fs__pause_all_next(p);
        return;
    }
    int open = v.state_len == 4 && memcmp(v.state, "open", 4) == 0;
    fs_buf_reset(&c->aux);
    if (open) fs_api_launch_json(&c->aux, &v);
    fs_launch_view_free(&v);
    if (!open) {
        p->i++;
        fs__pause_all_next(p);
        return;
    }
    fs_stock_launch_state(c->api->stock, p->ids[p->i], "pause", fs__pause_all_paused, p);
}

static void fs__pause_all_next(fs__pause_all_t *p)
{
    fs_api_ctx_t *c = p->c;
    if (p->i < p->n) {
        fs_stock_launch_get(c->api->stock, p->ids[p->i], fs__pause_all_got, p);
        return;
    }
    fs_buf_t *o = &c->out;
    fs_buf_reset(o);
    fs_buf_putc(o, '{');
    if (p->nfailed)
        fs_buf_puts(o, "\"error\":\"unavailable\",\"message\":\"the stock service failed; the "
                       "launches in failed were not paused, retry\",");
    fs_buf_printf(o, "\"count\":%d,\"paused\":[", p->npaused);
    fs_buf_append(o, p->paused.data, p->paused.len);
    fs_buf_puts(o, "],\"failed\":[");
    fs_buf_append(o, p->failed.data, p->failed.len);
    fs_buf_puts(o, "]}");
    fs_info("paused_all", "by=%s paused=%d failed=%d", fs_api_who(c), p->npaused, p->nfailed);
    int failed = p->nfailed;
    for (size_t k = 0; k < p->n; k++) free(p->ids[k]);
    free(p->ids);
    fs_buf_free(&p->paused);
    fs_buf_free(&p->failed);
    free(p);
    fs_api_send(c, failed ? 503 : 200, failed ? "Retry-After: 1\r\n" : NULL);
}

static void fs__on_launches(redisReply *r, int err, void *arg)
{
    fs_api_ctx_t *c = arg;
    if (err || r->type != REDIS_REPLY_ARRAY) {
        fs_api_redis_failed(c, r, err);
        return;
    }
    fs__pause_all_t *p = fs_xcalloc(1, sizeof *p);
    p->c = c;
    p->ids = fs_xcalloc(r->elements + 1, sizeof *p->ids);
    for (size_t i = 0; i < r->elements; i++) {
        size_t n;
        const char *id = fs_reply_str(r->element[i], &n);
        if (fs_id_valid(id, n)) p->ids[p->n++] = fs_xstrndup(id, n);
    }
    fs__pause_all_next(p);
}

void fs_api_admin(fs_api_ctx_t *c, int route)
{
    if (route == FS_ROUTE_ADMIN_PAUSE_ALL) {
        const char *argv[] = {"SMEMBERS", "fs:launches"};
        size_t lens[] = {8, 11};
        fs_stock_command(c->api->stock, fs__on_launches, c, 2, argv, lens);
        return;
    }
    if (fs_api_id_param(c, 0, c->launch, "launch")) return;
    switch (route) {
    case FS_ROUTE_ADMIN_GET_LAUNCH:
        fs__wr_read(c);
        fs_stock_launch_get(c->api->stock, c->launch, fs__on_launch_reply, c);
        return;
    case FS_ROUTE_ADMIN_PUT_LAUNCH:
    case FS_ROUTE_ADMIN_OPEN:
    case FS_ROUTE_ADMIN_PAUSE:
    case FS_ROUTE_ADMIN_CLOSE:
        /* read the launch first: the audit record keeps it as "before" */
        fs__wr_read(c);
        fs_stock_launch_get(c->api->stock, c->launch, fs__on_before, c);
        return;
    case FS_ROUTE_ADMIN_RESTOCK: fs__restock(c); return;
    case FS_ROUTE_ADMIN_RATE_LIMIT: {
        json_error_t jerr;
        json_t *doc = json_loadb(c->req->body, c->req->body_len, JSON_REJECT_DUPLICATES, &jerr);
        int bad = !doc ? (fs_api_error(c, 400, "invalid_request", "the body must be a JSON object: %s",
                                       jerr.text), 1)
                       : fs__parse_rate_limit(c, doc, "the body");
        json_decref(doc);
        if (bad) return;
        fs__wr_read(c);
        fs_stock_launch_get(c->api->stock, c->launch, fs__on_before, c);
        return;
    }
    }
}
