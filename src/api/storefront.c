/* Storefront handlers: reserve, confirm, cancel, read a reservation, read a launch's public state. */
#include "api.h"
#include "json_in.h"
#include "waiting_room.h"
#include "../common/log.h"
#include "../common/timeutil.h"
#include "flashsale/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FS__MAX_QTY 1000000
#define FS__CACHE_SLOTS 64
#define FS__CACHE_NS 1000000000u /* public launch state may be up to 1 s old */

/* ---- request bodies ---- */

/* With a shopper token the shopper is the token's: a missing user_id is taken from it, another one
 * is 403 user_mismatch. have: whether the request named a user (then in c->user). */
static int fs__token_user(fs_api_ctx_t *c, int have)
{
    if (!c->shopper_len) return 0;
    if (!have) {
        memcpy(c->user, c->shopper, c->shopper_len);
        c->user_len = c->shopper_len;
        c->user[c->user_len] = 0;
        return 0;
    }
    if (c->user_len != c->shopper_len || memcmp(c->user, c->shopper, c->user_len) != 0) {
        fs_api_error(c, 403, "user_mismatch", "user_id is not the shopper of the X-Shopper-Token");
        return -1;
    }
    return 0;
}

/* Reads "user_id" (required, unless a shopper token names the user) from a parsed body into
 * c->user. Answers 400 (or 403, fs__token_user) and returns -1 if bad. */
static int fs__body_user(fs_api_ctx_t *c, const fs_json_doc_t *d)
{
    int t = fs_json_find(d, 0, "user_id");
    if (t < 0 && c->shopper_len) return fs__token_user(c, 0);
    if (t < 0) {
        fs_api_error(c, 400, "invalid_request", "user_id is required");
        return -1;
    }
    if (fs_json_string(d, t, c->user, sizeof c->user, &c->user_len) ||
        !fs_user_valid(c->user, c->user_len)) {
        fs_api_error(c, 400, "invalid_request",
                     "user_id must be a string of 1 to 128 bytes without control characters");
        return -1;
    }
    return fs__token_user(c, 1);
}

static int fs__parse_body(fs_api_ctx_t *c, fs_json_doc_t *d)
{
    if (fs_json_parse(d, c->req->body, c->req->body_len)) {
        fs_api_error(c, 400, "invalid_request", "the body must be a JSON object");
        return -1;
    }
    return 0;
}

/* The reservation id path parameter → c->rid, c->launch, c->sku. Malformed ids are simply unknown. */
static int fs__rid_param(fs_api_ctx_t *c)
{
    fs_str_t p = c->req->params[0];
    if (p.n > FS_RID_MAX || fs_rid_parse(p.p, p.n, c->launch, c->sku)) {
        fs_api_error(c, 404, "not_found", "no such reservation");
        return -1;
    }
    memcpy(c->rid, p.p, p.n);
    c->rid[p.n] = 0;
    return 0;
}

/* ---- reserve ---- */

/* Copies the string literal lit to p; evaluates to the byte after it. */
#define FS__LIT(p, lit) ((char *)memcpy((p), (lit), sizeof(lit) - 1) + sizeof(lit) - 1)

/* Appends the reservation's fields to c->out, from '{' on, without the closing '}'. Written in
 * place (every 201 of the rush comes through here): the reservation id is base64url, launch and
 * SKU ids are [A-Za-z0-9_.~-] (checked on the way in), the times RFC 3339 and qty a number, none
 * of which JSON escapes; only the user id and the status go through fs_json_str. */
static void fs__reservation_json(fs_api_ctx_t *c, const char *rid, size_t rid_len, int64_t qty,
                                 const char *status, int64_t created_ms, int64_t expires_ms)
{
    fs_buf_t *o = &c->out;
    size_t ll = strlen(c->launch), sl = strlen(c->sku);
    fs_buf_reserve(o, 64 + rid_len + ll + sl);
    char *p = o->data + o->len;
    p = FS__LIT(p, "{\"reservation_id\":\"");
    memcpy(p, rid, rid_len);
    p = FS__LIT(p + rid_len, "\",\"launch\":\"");
    memcpy(p, c->launch, ll);
    p = FS__LIT(p + ll, "\",\"sku\":\"");
    memcpy(p, c->sku, sl);
    p = FS__LIT(p + sl, "\",\"user_id\":");
    o->len = (size_t)(p - o->data);
    fs_json_str(o, c->user, c->user_len);
    fs_buf_reserve(o, 128 + FS_I64_MAX_LEN);
    p = FS__LIT(o->data + o->len, ",\"qty\":");
    p += fs_fmt_i64(p, qty);
    p = FS__LIT(p, ",\"status\":");
    o->len = (size_t)(p - o->data);
    fs_json_cstr(o, status);
    /* A reservation always has both times; 0 would be a bug upstream, shown as null. */
    static const char names[2][15] = {",\"expires_at\":", ",\"created_at\":"};
    int64_t ms[2] = {expires_ms, created_ms};
    for (int k = 0; k < 2; k++) {
        fs_buf_reserve(o, sizeof names[k] + 32);
        p = o->data + o->len;
        memcpy(p, names[k], sizeof names[k] - 1);
        p += sizeof names[k] - 1;
        if (ms[k] <= 0) {
            p = FS__LIT(p, "null");
        } else {
            *p++ = '"';
            p += fs_time_format_ms(ms[k], p, 32);
            *p++ = '"';
        }
        o->len = (size_t)(p - o->data);
    }
    o->data[o->len] = 0;
}

/* Appends the RateLimit-Policy and RateLimit fields (draft-ietf-httpapi-ratelimit-headers) for
 * the launch's limits that are on, e.g.
 *   RateLimit-Policy: "shopper";q=5;w=3, "address";q=100;w=10
 *   RateLimit: "shopper";r=4;t=1, "address";r=99;t=1 */
static size_t fs__put(char *out, size_t n, const char *s, size_t len)
{
    memcpy(out + n, s, len);
    return n + len;
}
#define FS__PUT_LIT(out, n, lit) fs__put(out, n, lit, sizeof lit - 1)

/* out must have room for 2 * (20 + 2 * (14 + 2 * FS_I64_MAX_LEN)) bytes; built without printf
 * (this runs for every reservation while a launch has rate limits). */
static size_t fs__ratelimit_headers(const fs_reserve_item_t *it, char *out)
{
    static const char *const names[2] = {"\"shopper\"", "\"address\""};
    size_t n = 0;
    if (!it->rl_on || (!it->rl[0][0] && !it->rl[1][0])) return 0;
    for (int field = 0; field < 2; field++) {
        n = field ? FS__PUT_LIT(out, n, "RateLimit: ") : FS__PUT_LIT(out, n, "RateLimit-Policy: ");
        int any = 0;
        for (int k = 0; k < 2; k++) {
            const int64_t *f = it->rl[k];
            if (!f[0]) continue;
            if (any) n = FS__PUT_LIT(out, n, ", ");
            n = fs__put(out, n, names[k], 9);
            n = field ? FS__PUT_LIT(out, n, ";r=") : FS__PUT_LIT(out, n, ";q=");
            n += fs_fmt_i64(out + n, f[field ? 2 : 0]);
            n = field ? FS__PUT_LIT(out, n, ";t=") : FS__PUT_LIT(out, n, ";w=");
            n += fs_fmt_i64(out + n, f[field ? 3 : 1]);
            any = 1;
        }
        n = FS__PUT_LIT(out, n, "\r\n");
    }
    return n;
}

/* An error answer with extra header lines. */
static void fs__refuse(fs_api_ctx_t *c, int status, const char *code, const char *msg,
                       const char *headers)
{
    fs_json_error(&c->out, code, msg);
    fs_api_send(c, status, headers && headers[0] ? headers : NULL);
}

/* The sold-out answer's body, the one most of a rush gets: copied whole rather than built by
 * fs_json_error, whose text for this code and message it is (tests/unit/test_buf.c checks that
 * text; test_soldout.py this body). */
static const char fs__sold_out_body[] =
    "{\"error\":\"sold_out\",\"message\":\"fewer units are available than requested\"}";

static void fs__on_reserved(fs_reserve_item_t *it)
{
    fs_api_ctx_t *c = it->arg;
    char hdr[FS_RID_MAX + 512];
    size_t hl = fs__ratelimit_headers(it, hdr);
    if (it->replayed) {
        memcpy(hdr + hl, "Idempotent-Replayed: true\r\n", 27);
        hl += 27;
    }
    hdr[hl] = 0;
    switch (it->code) {
    case FS_RES_OK:
        fs__reservation_json(c, it->rid, it->rid_len, it->qty_out, "held", it->created_ms,
                             it->expires_ms);
        fs_buf_putc(&c->out, '}');
        memcpy(hdr + hl, "Location: /v1/reservations/", 27);
        memcpy(hdr + hl + 27, it->rid, it->rid_len);
        memcpy(hdr + hl + 27 + it->rid_len, "\r\n", 3);
        fs_api_send(c, 201, hdr);
        return;
    case FS_RES_SOLD_OUT:
        fs_buf_reset(&c->out);
        fs_buf_append(&c->out, fs__sold_out_body, sizeof fs__sold_out_body - 1);
        fs_api_send(c, 409, hl ? hdr : NULL);
        return;
    case FS_RES_LIMIT_EXCEEDED:
        fs__refuse(c, 409, "limit_exceeded",
                   "this would take the shopper past the per-user limit of this SKU", hdr);
        return;
    case FS_RES_RATE_LIMITED: {
        /* Retry-After: when the refusing limit admits a request again. */
        int64_t wait = 1;
        for (int k = 0; k < 2; k++)
            if (it->rl_on && it->rl[k][0] && it->rl[k][2] == 0 && it->rl[k][3] > wait)
                wait = it->rl[k][3];
        hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "Retry-After: %lld\r\n", (long long)wait);
        fs__refuse(c, 429, "rate_limited",
                   "too many reservation requests from this shopper or address; retry after Retry-After seconds",
                   hdr);
        return;
    }
    case FS_RES_NOT_OPEN:
        fs_api_error(c, 409, "launch_not_open", "launch %s is not open", c->launch);
        return;
    case FS_RES_NOT_FOUND:
        fs_api_error(c, 404, "not_found", "no such launch or SKU");
        return;
    case FS_RES_OVERLOADED:
        fs_api_error(c, 503, "overloaded", "too many reservations are waiting for this SKU, retry shortly");
        return;
    case FS_RES_UNAVAILABLE:
        fs_api_error(c, 503, "unavailable", "the stock service is unavailable, retry shortly");
        return;
    default:
        fs_api_error(c, 500, "internal", "unexpected answer from the stock service");
        return;
    }
}

/* A cursor over a request body for fs__reserve_fast. */
typedef struct {
    const char *p, *e;
} fs__cur_t;

static void fs__ws(fs__cur_t *k)
{
    while (k->p < k->e && (*k->p == ' ' || *k->p == '\t' || *k->p == '\n' || *k->p == '\r')) k->p++;
}

/* Whitespace, then the literal lit (e.g. "\"sku\""); 0 if it is not there. */
static int fs__lit(fs__cur_t *k, const char *lit, size_t n)
{
    fs__ws(k);
    if ((size_t)(k->e - k->p) < n || memcmp(k->p, lit, n) != 0) return 0;
    k->p += n;
    return 1;
}

/* Whitespace, then a string without escapes, quotes or control characters: its contents. */
static int fs__plain_str(fs__cur_t *k, const char **s, size_t *n)
{
    fs__ws(k);
    if (k->p >= k->e || *k->p != '"') return 0;
    const char *b = ++k->p;
    while (k->p < k->e && *k->p != '"' && *k->p != '\\' && (unsigned char)*k->p >= 0x20) k->p++;
    if (k->p >= k->e || *k->p != '"') return 0;
    *s = b;
    *n = (size_t)(k->p++ - b);
    return 1;
}

/* Nearly every reservation's body is {"sku": S, "user_id": U} or {"sku": S, "user_id": U,
 * "qty": N}, in that order, S and U without escapes, N a plain positive integer: read here
 * without the tokenizer, its lookups and its copies (about 1,100 instructions a request). Any
 * other body, and any value that fails a check, goes the general way (fs__reserve), which then
 * answers exactly as it always did. Returns 1 if it took the body (c->sku, c->user, *qty set). */
static int fs__reserve_fast(fs_api_ctx_t *c, int64_t *qty)
{
    fs__cur_t k = {c->req->body, c->req->body + c->req->body_len};
    const char *s, *u;
    size_t sl, ul;
    if (!fs__lit(&k, "{", 1) || !fs__lit(&k, "\"sku\"", 5) || !fs__lit(&k, ":", 1) ||
        !fs__plain_str(&k, &s, &sl) || !fs__lit(&k, ",", 1) || !fs__lit(&k, "\"user_id\"", 9) ||
        !fs__lit(&k, ":", 1) || !fs__plain_str(&k, &u, &ul))
        return 0;
    int64_t q = 1;
    if (fs__lit(&k, ",", 1)) {
        if (!fs__lit(&k, "\"qty\"", 5) || !fs__lit(&k, ":", 1)) return 0;
        fs__ws(&k);
        const char *d = k.p;
        if (d >= k.e || *d < '1' || *d > '9') return 0;
        for (q = 0; k.p < k.e && *k.p >= '0' && *k.p <= '9' && k.p - d < 7; k.p++)
            q = q * 10 + (*k.p - '0');
        if (q > FS__MAX_QTY) return 0;
    }
    if (!fs__lit(&k, "}", 1)) return 0;
    fs__ws(&k);
    if (k.p != k.e || sl >= sizeof c->sku || !fs_id_valid(s, sl) || ul >= sizeof c->user ||
        !fs_user_valid(u, ul))
        return 0;
    memcpy(c->sku, s, sl);
    c->sku[sl] = 0;
    memcpy(c->user, u, ul);
    c->user[ul] = 0;
    c->user_len = ul;
    *qty = q;
    return 1;
}

static void fs__reserve(fs_api_ctx_t *c)
{
    fs_json_doc_t d;
    int64_t qty = 1;
    if (fs_api_id_param(c, 0, c->launch, "launch")) return;
    if (fs__reserve_fast(c, &qty)) {
        if (fs__token_user(c, 1)) return;
    } else {
        if (fs__parse_body(c, &d)) return;
        int t = fs_json_find(&d, 0, "sku");
        size_t n;
        if (t < 0 || fs_json_string(&d, t, c->sku, sizeof c->sku, &n) || !fs_id_valid(c->sku, n)) {
            fs_api_error(c, 400, "invalid_request",
                         "sku is required: 1 to 128 characters of A-Z a-z 0-9 _ . ~ -");
            return;
        }
        if (fs__body_user(c, &d)) return;
        t = fs_json_find(&d, 0, "qty");
        if (t >= 0 && (fs_json_int(&d, t, &qty) || qty < 1 || qty > FS__MAX_QTY)) {
            fs_api_error(c, 400, "invalid_request", "qty must be an integer from 1 to %d",
                         FS__MAX_QTY);
            return;
        }
    }
    fs_reserve_item_t *it = &c->item;
    fs_str_t idem;
    if (fs_http_req_header(c->req, "idempotency-key", &idem)) {
        int ok = idem.n > 0 && idem.n < sizeof c->idem;
        for (size_t i = 0; ok && i < idem.n; i++)
            ok = (unsigned char)idem.p[i] >= 0x20 && (unsigned char)idem.p[i] < 0x7f;
        if (!ok) {
            fs_api_error(c, 400, "invalid_request",
                         "Idempotency-Key must be 1 to 255 printable ASCII characters");
            return;
        }
        memcpy(c->idem, idem.p, idem.n);
        c->idem[idem.n] = 0;
        it->idem = c->idem;
        it->idem_len = idem.n;
    }
    it->launch = c->launch;
    it->sku = c->sku;
    it->addr = fs_http_req_client_addr(c->req); /* for the per-address rate limit */
    it->user = c->user;
    it->user_len = c->user_len;
    it->qty = (int)qty;
    it->done = fs__on_reserved;
    it->arg = c;
    if (fs_api_waiting_room(c)) return; /* a launch with a waiting room: it decides when */
    fs_stock_reserve(c->api->stock, it);
}

/* ---- confirm, cancel, get ---- */

static void fs__on_confirmed(redisReply *r, int err, void *arg)
{
    fs_api_ctx_t *c = arg;
    if (err || r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
        fs_api_redis_failed(c, r, err);
        return;
    }
    if (fs_api_reply_is(r, "confirmed") && r->elements >= 7) {
        size_t ol, pl;
        const char *oid = fs_reply_str(r->element[1], &ol);
        const char *pref = fs_reply_str(r->element[5], &pl);
        int first = 1;
        fs_buf_t *o = &c->out;
        fs_buf_putc(o, '{');
        fs_json_kv_str(o, &first, "order_id", oid, ol);
        fs_json_kv_cstr(o, &first, "reservation_id", c->rid);
        fs_json_kv_cstr(o, &first, "launch", c->launch);
        fs_json_kv_cstr(o, &first, "sku", c->sku);
        fs_json_kv_str(o, &first, "user_id", c->user, c->user_len);
        fs_json_kv_i64(o, &first, "qty", fs_reply_i64(r->element[2], NULL));
        fs_json_kv_i64(o, &first, "price_cents", fs_reply_i64(r->element[4], NULL));
        fs_json_kv_str(o, &first, "payment_ref", pref, pl);
        fs_json_kv_cstr(o, &first, "status", "confirmed");
        fs_json_kv_time(o, &first, "confirmed_at", fs_reply_i64(r->element[3], NULL), 1);
        fs_buf_putc(o, '}');
        fs_api_send(c, 200, NULL);
    } else if (fs_api_reply_is(r, "not_found")) {
        fs_api_error(c, 404, "not_found", "no such reservation");
    } else if (fs_api_reply_is(r, "reservation_expired")) {
        fs_stock_units_back(c->api->stock, c->launch, c->sku);
        fs_api_error(c, 409, "reservation_expired", "the hold expired before it was confirmed");
    } else if (fs_api_reply_is(r, "reservation_cancelled")) {
        fs_api_error(c, 409, "reservation_cancelled", "the reservation was cancelled");
    } else {
        fs_api_redis_failed(c, r, 0);
    }
}

static void fs__on_cancelled(redisReply *r, int err, void *arg)
{
    fs_api_ctx_t *c = arg;
    if (err || r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
        fs_api_redis_failed(c, r, err);
        return;
    }
    if (fs_api_reply_is(r, "cancelled")) {
        fs_stock_units_back(c->api->stock, c->launch, c->sku);
        int first = 1;
        fs_buf_putc(&c->out, '{');
        fs_json_kv_cstr(&c->out, &first, "reservation_id", c->rid);
        fs_json_kv_cstr(&c->out, &first, "status", "cancelled");
        fs_buf_putc(&c->out, '}');
        fs_api_send(c, 200, NULL);
    } else if (fs_api_reply_is(r, "not_found")) {
        fs_api_error(c, 404, "not_found", "no such reservation");
    } else if (fs_api_reply_is(r, "reservation_confirmed")) {
        fs_api_error(c, 409, "reservation_confirmed", "the reservation is already confirmed");
    } else if (fs_api_reply_is(r, "reservation_expired")) {
        fs_stock_units_back(c->api->stock, c->launch, c->sku);
        fs_api_error(c, 409, "reservation_expired", "the hold already expired; its units are back in stock");
    } else {
        fs_api_redis_failed(c, r, 0);
    }
}

static void fs__on_got(redisReply *r, int err, void *arg)
{
    fs_api_ctx_t *c = arg;
    if (err || r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
        fs_api_redis_failed(c, r, err);
        return;
    }
    if (fs_api_reply_is(r, "not_found")) {
        fs_api_error(c, 404, "not_found", "no such reservation");
        return;
    }
    if (!fs_api_reply_is(r, "ok") || r->elements < 8) {
        fs_api_redis_failed(c, r, 0);
        return;
    }
    size_t sl, ol, pl;
    const char *status = fs_reply_str(r->element[2], &sl);
    char st[16];
    snprintf(st, sizeof st, "%.*s", (int)(sl < 15 ? sl : 15), status);
    fs__reservation_json(c, c->rid, strlen(c->rid), fs_reply_i64(r->element[1], NULL), st,
                         fs_reply_i64(r->element[3], NULL), fs_reply_i64(r->element[4], NULL));
    const char *oid = fs_reply_str(r->element[5], &ol);
    if (ol) {
        int first = 0;
        const char *pref = fs_reply_str(r->element[7], &pl);
        fs_json_kv_str(&c->out, &first, "order_id", oid, ol);
        fs_json_kv_time(&c->out, &first, "confirmed_at", fs_reply_i64(r->element[6], NULL), 1);
        fs_json_kv_str(&c->out, &first, "payment_ref", pref, pl);
    }
    fs_buf_putc(&c->out, '}');
    fs_api_send(c, 200, NULL);
}

static int fs__hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes the query parameter `name` into out. Returns 1 if present and well-formed. */
static int fs__query_param(fs_str_t q, const char *name, char *out, size_t cap, size_t *outlen)
{
    size_t nl = strlen(name), i = 0;
    while (i < q.n) {
        size_t end = i;
        while (end < q.n && q.p[end] != '&') end++;
        if (end - i > nl && memcmp(q.p + i, name, nl) == 0 && q.p[i + nl] == '=') {
            size_t o = 0;
            for (size_t k = i + nl + 1; k < end; k++) {
                char ch = q.p[k];
                if (ch == '+') ch = ' ';
                else if (ch == '%') {
                    int hi, lo;
                    if (k + 2 >= end || (hi = fs__hexval(q.p[k + 1])) < 0 ||
                        (lo = fs__hexval(q.p[k + 2])) < 0)
                        return 0;
                    ch = (char)(hi << 4 | lo);
                    k += 2;
                }
                if (o + 1 >= cap) return 0;
                out[o++] = ch;
            }
            out[o] = 0;
            *outlen = o;
            return 1;
        }
        i = end + 1;
    }
    return 0;
}

/* Reads and checks the request (user, payment_ref) before the id: bad input is 400 even when the
 * id is unknown too. */
static void fs__reservation_call(fs_api_ctx_t *c, int route)
{
    fs_stock_t *st = c->api->stock;
    if (route == FS_ROUTE_GET_RESERVATION) {
        fs_str_t raw;
        int have = fs__query_param(c->req->query, "user_id", c->user, sizeof c->user, &c->user_len);
        if (have ? !fs_user_valid(c->user, c->user_len)
                 : fs_api_query(c, "user_id", &raw) || !c->shopper_len) {
            fs_api_error(c, 400, "invalid_request",
                         "query parameter user_id is required: 1 to 128 bytes without control characters");
            return;
        }
        if (fs__token_user(c, have)) return;
        if (fs__rid_param(c)) return;
        fs_stock_get_reservation(st, c->launch, c->sku, c->rid, c->user, c->user_len, fs__on_got, c);
        return;
    }
    fs_json_doc_t d;
    if (fs__parse_body(c, &d) || fs__body_user(c, &d)) return;
    if (route == FS_ROUTE_CANCEL) {
        if (fs__rid_param(c)) return;
        fs_stock_cancel(st, c->launch, c->sku, c->rid, c->user, c->user_len, fs__on_cancelled, c);
        return;
    }
    int t = fs_json_find(&d, 0, "payment_ref");
    if (t >= 0 && !fs_json_is_null(&d, t)) {
        int ok = fs_json_string(&d, t, c->payment_ref, sizeof c->payment_ref, &c->payment_ref_len) == 0;
        for (size_t i = 0; ok && i < c->payment_ref_len; i++)
            ok = (unsigned char)c->payment_ref[i] >= 0x20 && c->payment_ref[i] != 0x7f;
        if (!ok) {
            fs_api_error(c, 400, "invalid_request",
                         "payment_ref must be a string of at most 256 bytes without control characters");
            return;
        }
    }
    if (fs__rid_param(c)) return;
    fs_stock_confirm(st, c->launch, c->sku, c->rid, c->user, c->user_len, c->payment_ref,
                     c->payment_ref_len, fs__on_confirmed, c);
}

/* ---- public launch state, cached for up to a second per loop ---- */

typedef struct {
    char launch[FS_ID_MAX + 1];
    int status;
    uint64_t at_ns;
    fs_buf_t body;
} fs__cache_slot_t;

struct fs_launch_cache {
    fs__cache_slot_t slots[FS__CACHE_SLOTS];
};

static fs__cache_slot_t *fs__slot(fs_api_t *api, const char *launch)
{
    if (!api->cache) api->cache = fs_xcalloc(1, sizeof *api->cache);
    uint32_t h = 2166136261u;
    for (const char *p = launch; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    return &api->cache->slots[h % FS__CACHE_SLOTS];
}

static void fs__on_launch(redisReply *r, int err, void *arg)
{
    fs_api_ctx_t *c = arg;
    fs__cache_slot_t *slot = fs__slot(c->api, c->launch);
    fs_launch_view_t v;
    if (err || r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
        fs_api_redis_failed(c, r, err);
        return;
    }
    int status = 200;
    if (fs_api_reply_is(r, "not_found")) {
        status = 404;
        fs_buf_puts(&c->out, "{\"error\":\"not_found\",\"message\":\"no such launch\"}");
    } else if (fs_launch_view_parse(r, &v)) {
        fs_api_redis_failed(c, r, 0);
        return;
    } else {
        fs_buf_t *o = &c->out;
        int first = 1;
        fs_buf_putc(o, '{');
        fs_json_kv_str(o, &first, "launch", v.launch, v.launch_len);
        fs_json_kv_str(o, &first, "name", v.name, v.name_len);
        fs_json_kv_str(o, &first, "state", v.state, v.state_len);
        fs_json_kv_time(o, &first, "starts_at", v.starts_at_ms, 1);
        fs_json_kv_time(o, &first, "ends_at", v.ends_at_ms, 1);
        fs_json_key(o, &first, "skus");
        fs_buf_putc(o, '[');
        for (size_t i = 0; i < v.nskus; i++) {
            int f2 = 1;
            if (i) fs_buf_putc(o, ',');
            fs_buf_putc(o, '{');
            fs_json_kv_str(o, &f2, "sku", v.skus[i].sku, v.skus[i].sku_len);
            fs_json_kv_i64(o, &f2, "available", v.skus[i].available);
            fs_json_kv_i64(o, &f2, "price_cents", v.skus[i].price_cents);
            fs_json_kv_i64(o, &f2, "per_user_limit", v.skus[i].per_user_limit);
            fs_buf_putc(o, '}');
        }
        fs_buf_puts(o, "]}");
        fs_launch_view_free(&v);
    }
    snprintf(slot->launch, sizeof slot->launch, "%s", c->launch);
    slot->status = status;
    slot->at_ns = fs_mono_ns();
    fs_buf_reset(&slot->body);
    fs_buf_append(&slot->body, c->out.data, c->out.len);
    fs_api_send(c, status, NULL);
}

static void fs__get_launch(fs_api_ctx_t *c)
{
    if (fs_api_id_param(c, 0, c->launch, "launch")) return;
    fs__cache_slot_t *slot = fs__slot(c->api, c->launch);
    if (slot->at_ns && strcmp(slot->launch, c->launch) == 0 &&
        fs_mono_ns() - slot->at_ns < FS__CACHE_NS) {
        fs_buf_append(&c->out, slot->body.data, slot->body.len);
        fs_api_send(c, slot->status, NULL);
        return;
    }
    fs_stock_launch_get(c->api->stock, c->launch, fs__on_launch, c);
}

void fs_api_launch_cache_free(fs_api_t *api)
{
    fs_api_waiting_room_free(api);
    if (!api->cache) return;
    for (int i = 0; i < FS__CACHE_SLOTS; i++) fs_buf_free(&api->cache->slots[i].body);
}

void fs_api_storefront(fs_api_ctx_t *c, int route)
{
    switch (route) {
    case FS_ROUTE_RESERVE: fs__reserve(c); return;
    case FS_ROUTE_GET_LAUNCH: fs__get_launch(c); return;
    default: fs__reservation_call(c, route); return;
    }
}
