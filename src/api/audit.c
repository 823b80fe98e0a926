/* Audit stream writing and GET /admin/v1/launches/{launch}/audit (see audit.h). */
#include "audit.h"
#include "api.h"
#include "../common/log.h"
#include "../common/timeutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fs_audit_write(fs_stock_t *st, const fs_audit_entry_t *e, fs_redis_cb cb, void *arg)
{
    char key[FS_ID_MAX + 16], at[32];
    snprintf(key, sizeof key, "fs:audit:{%s}", e->launch);
    fs_time_format_ms(fs_wall_ms(), at, sizeof at);
    const char *argv[] = {"XADD", key, "MAXLEN", "~", FS_AUDIT_MAXLEN, "*",
                          "at", at, "who", e->who, "role", e->role, "action", e->action,
                          "sku", e->sku ? e->sku : "",
                          "before", e->before_len ? e->before : "null",
                          "after", e->after_len ? e->after : "null",
                          "detail", e->detail ? e->detail : "null"};
    size_t lens[sizeof argv / sizeof argv[0]];
    for (size_t i = 0; i < sizeof argv / sizeof argv[0]; i++) lens[i] = strlen(argv[i]);
    if (e->before_len) lens[17] = e->before_len;
    if (e->after_len) lens[19] = e->after_len;
    fs_stock_command(st, cb, arg, (int)(sizeof argv / sizeof argv[0]), argv, lens);
}

/* Writes a stored JSON field as JSON (re-encoded), or as a string if it is not JSON. */
static void fs__json_field(fs_buf_t *o, int *first, const char *key, const char *s, size_t n)
{
    json_error_t jerr;
    json_t *v = json_loadb(s, n, JSON_DECODE_ANY, &jerr);
    char *text = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (text) {
        fs_json_key(o, first, key);
        fs_buf_puts(o, text);
    } else {
        fs_json_kv_str(o, first, key, s, n);
    }
    free(text);
    json_decref(v);
}

static void fs__on_range(redisReply *r, int err, void *arg)
{
    fs_api_ctx_t *c = arg;
    if (err || r->type != REDIS_REPLY_ARRAY) {
        fs_api_redis_failed(c, r, err);
        return;
    }
    fs_buf_t *o = &c->out;
    int first = 1;
    fs_buf_putc(o, '{');
    fs_json_kv_cstr(o, &first, "launch", c->launch);
    fs_json_key(o, &first, "entries");
    fs_buf_putc(o, '[');
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) continue;
        redisReply *fields = e->element[1];
        int f = 1;
        size_t n;
        if (i) fs_buf_putc(o, ',');
        fs_buf_putc(o, '{');
        const char *id = fs_reply_str(e->element[0], &n);
        fs_json_kv_str(o, &f, "id", id, n);
        for (size_t k = 0; fields->type == REDIS_REPLY_ARRAY && k + 1 < fields->elements; k += 2) {
            size_t kl, vl;
            const char *name = fs_reply_str(fields->element[k], &kl);
            const char *val = fs_reply_str(fields->element[k + 1], &vl);
            char kbuf[16];
            if (kl == 0 || kl >= sizeof kbuf) continue;
            memcpy(kbuf, name, kl);
            kbuf[kl] = 0;
            if (strcmp(kbuf, "before") == 0 || strcmp(kbuf, "after") == 0 || strcmp(kbuf, "detail") == 0)
                fs__json_field(o, &f, kbuf, val, vl);
            else if (strcmp(kbuf, "sku") == 0 && vl == 0) {
                fs_json_key(o, &f, "sku");
                fs_buf_puts(o, "null");
            } else
                fs_json_kv_str(o, &f, kbuf, val, vl);
        }
        fs_buf_putc(o, '}');
    }
    fs_buf_puts(o, "]}");
    fs_api_send(c, 200, "Cache-Control: no-store\r\n");
}

void fs_api_audit_get(fs_api_ctx_t *c)
{
    long count;
    if (fs_api_id_param(c, 0, c->launch, "launch") ||
        fs_api_query_int(c, "count", 1, 1000, 100, &count))
        return;
    char key[FS_ID_MAX + 16], cnt[16];
    size_t kl = (size_t)snprintf(key, sizeof key, "fs:audit:{%s}", c->launch);
    const char *argv[] = {"XREVRANGE", key, "+", "-", "COUNT", cnt};
    size_t lens[] = {9, kl, 1, 1, 5, (size_t)snprintf(cnt, sizeof cnt, "%ld", count)};
    fs_stock_command(c->api->stock, fs__on_range, c, 6, argv, lens);
}
