/* The body of a delivery and its signature (see relay.h and docs/relay.md).
 *
 * Body: one JSON object with the order's fields in a fixed order, qty and price_cents as numbers:
 *   {"order_id":"o_...","reservation_id":"...","launch":"L","sku":"S","user_id":"u","qty":1,
 *    "price_cents":79900,"payment_ref":"","confirmed_at":"2026-11-27T01:02:03.456Z"}
 * The same entry always gives the same bytes, so a receiver may also compare bodies.
 *
 * Signature: Flashsale-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>,
 * one v1 per configured secret (several during a rotation). */
#include "relay.h"
#include "../common/log.h"
#include "flashsale/error.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

static const char *const fs__fields[] = {"order_id", "reservation_id", "launch", "sku",
                                         "user_id", "qty", "price_cents", "payment_ref",
                                         "confirmed_at"};
#define FS__NFIELDS (sizeof fs__fields / sizeof fs__fields[0])
enum { FS__F_ORDER_ID = 0, FS__F_QTY = 5, FS__F_PRICE = 6 };

static int fs__is_int(const char *s, size_t n)
{
    if (n == 0 || n > 18) return 0;
    size_t i = s[0] == '-' ? 1 : 0;
    if (i == n) return 0;
    for (; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

int fs_relay_payload(const redisReply *fields, fs_buf_t *body, char **order_id, char *why,
                     size_t whycap)
{
    const char *val[FS__NFIELDS] = {0};
    size_t len[FS__NFIELDS] = {0};
    *order_id = NULL;
    if (!fields || fields->type != REDIS_REPLY_ARRAY) {
        snprintf(why, whycap, "the entry no longer exists");
        return FS_EINVAL;
    }
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i], *v = fields->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
        for (size_t f = 0; f < FS__NFIELDS; f++)
            if (k->len == strlen(fs__fields[f]) && memcmp(k->str, fs__fields[f], k->len) == 0) {
                val[f] = v->str;
                len[f] = v->len;
            }
    }
    if (val[FS__F_ORDER_ID] && len[FS__F_ORDER_ID] > 0 && len[FS__F_ORDER_ID] <= 256)
        *order_id = fs_xstrndup(val[FS__F_ORDER_ID], len[FS__F_ORDER_ID]);
    for (size_t f = 0; f < FS__NFIELDS; f++) {
        if (!val[f] || (f == FS__F_ORDER_ID && !*order_id)) {
            snprintf(why, whycap, "field %s is missing", fs__fields[f]);
            return FS_EINVAL;
        }
        if ((f == FS__F_QTY || f == FS__F_PRICE) && !fs__is_int(val[f], len[f])) {
            snprintf(why, whycap, "field %s is not an integer", fs__fields[f]);
            return FS_EINVAL;
        }
    }
    fs_buf_reset(body);
    fs_buf_putc(body, '{');
    int first = 1;
    for (size_t f = 0; f < FS__NFIELDS; f++) {
        if (f == FS__F_QTY || f == FS__F_PRICE) {
            fs_json_key(body, &first, fs__fields[f]);
            fs_buf_append(body, val[f], len[f]);
        } else {
            fs_json_kv_str(body, &first, fs__fields[f], val[f], len[f]);
        }
    }
    fs_buf_putc(body, '}');
    return FS_OK;
}

void fs_relay_sign(fs_buf_t *h, int64_t t, const char *body, size_t len, char *const *secrets,
                   const size_t *secret_lens, size_t nsecrets)
{
    char ts[24];
    int tl = snprintf(ts, sizeof ts, "%" PRId64, t);
    fs_buf_t msg;
    fs_buf_init(&msg);
    fs_buf_append(&msg, ts, (size_t)tl);
    fs_buf_putc(&msg, '.');
    fs_buf_append(&msg, body, len);
    fs_buf_printf(h, "Flashsale-Signature: t=%s", ts);
    for (size_t i = 0; i < nsecrets; i++) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int ml = 0;
        unsigned char *ok = HMAC(EVP_sha256(), secrets[i], (int)secret_lens[i],
                                 (const unsigned char *)msg.data, msg.len, mac, &ml);
        fs_assert(ok && ml == 32);
        char hex[65];
        for (unsigned k = 0; k < ml; k++) snprintf(hex + 2 * k, 3, "%02x", mac[k]);
        fs_buf_printf(h, ",v1=%s", hex);
    }
    fs_buf_puts(h, "\r\n");
    fs_buf_free(&msg);
}
