/* The waiting room's door and tickets (see waiting_room.h and docs/rate-limits.md). */
#include "waiting_room.h"
#include "json_in.h"
#include "../common/log.h"
#include "../common/timeutil.h"
#include "flashsale/error.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FS__WR_SLOTS 64
#define FS__WR_CACHE_NS 1000000000u /* "this launch has no room" is believed for up to 1 s */
#define FS__MAC_B64 43
#define FS__PAYLOAD_MAX (FS_ID_MAX + 1 + FS_ID_MAX + 3 * 20)
#define FS__KEY_LABEL "flashsale waiting-room ticket v1"

/* What this loop last heard of a launch's room (from any fs_wr_pass answer). Collisions of the
 * launch hash simply replace a slot: the cost is one more Redis call. */
typedef struct {
    char launch[FS_ID_MAX + 1];
    int64_t admit_milli;
    uint64_t at_ns; /* 0: empty */
} fs__wr_slot_t;

/* Owned by the loop's fs_api_t (api->wr); freed by fs_api_waiting_room_free. */
struct fs_wr {
    uint8_t key[FS_WR_KEY_LEN];
    fs__wr_slot_t slots[FS__WR_SLOTS];
};

/* ---- tickets ---- */

void fs_wr_key(const char *secret, size_t secret_len, uint8_t key[FS_WR_KEY_LEN])
{
    unsigned int len = 0;
    HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)FS__KEY_LABEL,
         strlen(FS__KEY_LABEL), key, &len);
}

static void fs__mac(const uint8_t key[FS_WR_KEY_LEN], const char *msg, size_t n, uint8_t mac[32])
{
    unsigned int len = 0;
    HMAC(EVP_sha256(), key, FS_WR_KEY_LEN, (const unsigned char *)msg, n, mac, &len);
}

int fs_wr_ticket_sign(const uint8_t key[FS_WR_KEY_LEN], const fs_wr_ticket_t *t, char *out)
{
    size_t ll = strlen(t->launch);
    if (!fs_id_valid(t->launch, ll) || !fs_user_valid(t->user, t->user_len) || t->position < 0 ||
        t->turn_ms < 0 || t->exp_ms < 0)
        return FS_EINVAL;
    char payload[FS__PAYLOAD_MAX + 1];
    size_t n = 0;
    memcpy(payload, t->launch, ll);
    n += ll;
    payload[n++] = '|';
    memcpy(payload + n, t->user, t->user_len);
    n += t->user_len;
    n += (size_t)snprintf(payload + n, sizeof payload - n, "|%lld|%lld|%lld", (long long)t->position,
                          (long long)t->turn_ms, (long long)t->exp_ms);
    size_t m = fs_b64url_encode((const uint8_t *)payload, n, out);
    uint8_t mac[32];
    fs__mac(key, out, m, mac);
    out[m++] = '.';
    m += fs_b64url_encode(mac, sizeof mac, out + m);
    OPENSSL_cleanse(mac, sizeof mac);
    return (int)m;
}

/* A decimal integer of 1..19 digits; -1 if not. */
static int64_t fs__num(const char *p, size_t n)
{
    if (n == 0 || n > 18) return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

int fs_wr_ticket_verify(const uint8_t key[FS_WR_KEY_LEN], const char *tok, size_t n, int64_t now_ms,
                        fs_wr_ticket_t *t)
{
    if (n > FS_WR_TICKET_MAX) return FS_WR_MALFORMED;
    const char *dot = memchr(tok, '.', n);
    if (!dot || dot == tok) return FS_WR_MALFORMED;
    size_t pl = (size_t)(dot - tok), ml = n - pl - 1;
    if (ml != FS__MAC_B64) return FS_WR_MALFORMED;
    uint8_t given[34], want[32];
    if (fs_b64url_decode(dot + 1, ml, given, sizeof given) != 32) return FS_WR_MALFORMED;
    char payload[FS__PAYLOAD_MAX + 3];
    int len = fs_b64url_decode(tok, pl, (uint8_t *)payload, FS__PAYLOAD_MAX);
    if (len < 0) return FS_WR_MALFORMED;
    fs__mac(key, tok, pl, want);
    int same = CRYPTO_memcmp(given, want, sizeof want) == 0;
    OPENSSL_cleanse(want, sizeof want);
    if (!same) return FS_WR_FORGED;
    /* launch "|" user "|" position "|" turn_ms "|" exp_ms: the user may hold '|', so the numbers
     * are taken from the end and the launch (which cannot) from the start. */
    const char *p = payload, *end = payload + len, *bar[3];
    for (int k = 2; k >= 0; k--) {
        const char *q = end;
        while (q > p && q[-1] != '|') q--;
        if (q == p) return FS_WR_MALFORMED;
        bar[k] = q - 1;
        end = q - 1;
    }
    const char *b0 = memchr(p, '|', (size_t)(end - p));
    if (!b0) return FS_WR_MALFORMED;
    size_t ll = (size_t)(b0 - p), ul = (size_t)(end - b0 - 1);
    if (!fs_id_valid(p, ll) || !fs_user_valid(b0 + 1, ul)) return FS_WR_MALFORMED;
    const char *stop = payload + len;
    int64_t v[3];
    for (int k = 0; k < 3; k++) {
        const char *from = bar[k] + 1, *to = k < 2 ? bar[k + 1] : stop;
        if ((v[k] = fs__num(from, (size_t)(to - from))) < 0) return FS_WR_MALFORMED;
    }
    if (now_ms >= v[2]) return FS_WR_EXPIRED;
    memcpy(t->launch, p, ll);
    t->launch[ll] = 0;
    memcpy(t->user, b0 + 1, ul);
    t->user[ul] = 0;
    t->user_len = ul;
    t->position = v[0];
    t->turn_ms = v[1];
    t->exp_ms = v[2];
    return FS_OK;
}

/* ---- per-loop state ---- */

static struct fs_wr *fs__wr(fs_api_t *api)
{
    if (!api->wr) {
        api->wr = fs_xcalloc(1, sizeof *api->wr);
        const fs_api_shared_t *sh = api->shared;
        if (sh->shopper_secret && sh->shopper_secret[0])
            fs_wr_key(sh->shopper_secret, strlen(sh->shopper_secret), api->wr->key);
        else if (sh->admin_tokens.count)
            fs_wr_key(sh->admin_tokens.items[0].p, sh->admin_tokens.items[0].n, api->wr->key);
        else /* cannot happen (the server refuses to start without an operator token) */
            fs_random_bytes(api->wr->key, sizeof api->wr->key);
    }
    return api->wr;
}

static fs__wr_slot_t *fs__slot(struct fs_wr *wr, const char *launch)
{
    uint32_t h = 2166136261u;
    for (const char *p = launch; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    return &wr->slots[h % FS__WR_SLOTS];
}

static void fs__remember(struct fs_wr *wr, const char *launch, int64_t admit_milli)
{
    fs__wr_slot_t *s = fs__slot(wr, launch);
    snprintf(s->launch, sizeof s->launch, "%s", launch);
    s->admit_milli = admit_milli;
    s->at_ns = fs_mono_ns();
}

void fs_api_waiting_room_free(fs_api_t *api)
{
    if (!api->wr) return;
    OPENSSL_cleanse(api->wr->key, sizeof api->wr->key);
    free(api->wr);
    api->wr = NULL;
}

/* ---- the door ---- */

/* An answer given by the room itself: not a reservation outcome of the stock layer (the stats
 * count it as "rejected", or as `code` when code >= 0). */
static void fs__answer_error(fs_api_ctx_t *c, int code, int status, const char *err, const char *msg)
{
    if (code < 0) c->item.launch = NULL;
    else c->item.code = (fs_res_code_t)code;
    fs_api_error(c, status, err, "%s", msg);
}

static void fs__wait(fs_api_ctx_t *c, int64_t pos, int64_t turn_ms, int64_t exp_ms, int64_t now_ms)
{
    fs_wr_ticket_t t = {.position = pos, .turn_ms = turn_ms, .exp_ms = exp_ms};
    snprintf(t.launch, sizeof t.launch, "%s", c->launch);
    memcpy(t.user, c->user, c->user_len);
    t.user[c->user_len] = 0;
    t.user_len = c->user_len;
    char ticket[FS_WR_TICKET_MAX + 1];
    int tl = fs_wr_ticket_sign(fs__wr(c->api)->key, &t, ticket);
    if (tl < 0) {
        fs__answer_error(c, FS_RES_ERROR, 500, "internal", "could not sign a queue ticket");
        return;
    }
    int64_t wait_s = (turn_ms - now_ms + 999) / 1000;
    if (wait_s < 1) wait_s = 1;
    int first = 1;
    fs_buf_t *o = &c->out;
    fs_buf_reset(o);
    fs_buf_putc(o, '{');
    fs_json_kv_cstr(o, &first, "status", "waiting");
    fs_json_kv_cstr(o, &first, "launch", c->launch);
    fs_json_kv_i64(o, &first, "position", pos);
    fs_json_kv_time(o, &first, "turn_at", turn_ms, 0);
    fs_json_kv_i64(o, &first, "retry_after", wait_s);
    fs_json_kv_str(o, &first, "ticket", ticket, (size_t)tl);
    fs_json_kv_time(o, &first, "expires_at", exp_ms, 0);
    fs_buf_putc(o, '}');
    char hdr[48];
    snprintf(hdr, sizeof hdr, "Retry-After: %lld\r\n", (long long)wait_s);
    c->item.launch = NULL; /* not a stock outcome: counted as "rejected" */
    fs_api_send(c, 202, hdr);
}

static int fs__code(const redisReply *r, const char *code)
{
    size_t n;
    const char *s = fs_reply_str(r, &n);
    return n == strlen(code) && memcmp(s, code, n) == 0;
}

static void fs__on_pass(redisReply *r, int err, void *arg)
{
    fs_api_ctx_t *c = arg;
    if (err || r->type != REDIS_REPLY_ARRAY || r->elements != 6) {
        c->item.code = err ? FS_RES_UNAVAILABLE : FS_RES_ERROR;
        fs_api_redis_failed(c, r, err);
        return;
    }
    int64_t v[5];
    for (int i = 0; i < 5; i++) v[i] = fs_reply_i64(r->element[1 + i], NULL);
    fs__remember(fs__wr(c->api), c->launch, v[0]);
    if (fs__code(r->element[0], "off") || fs__code(r->element[0], "go")) {
        fs_stock_reserve(c->api->stock, &c->item);
    } else if (fs__code(r->element[0], "wait")) {
        fs__wait(c, v[1], v[2], v[3], v[4]);
    } else if (fs__code(r->element[0], "sold_out")) {
        fs__answer_error(c, FS_RES_SOLD_OUT, 409, "sold_out",
                         "fewer units are available than requested; the waiting room is closed for this SKU");
    } else {
        c->item.code = FS_RES_ERROR;
        fs_api_redis_failed(c, r, 0);
    }
}

int fs_api_waiting_room(fs_api_ctx_t *c)
{
    struct fs_wr *wr = fs__wr(c->api);
    fs_str_t h;
    c->wr_pos = c->wr_turn_ms = 0;
    if (fs_http_req_header(c->req, "x-queue-ticket", &h)) {
        fs_wr_ticket_t t;
        int rc = fs_wr_ticket_verify(wr->key, h.p, h.n, fs_wall_ms(), &t);
        if (rc == FS_WR_EXPIRED) {
            fs__answer_error(c, -1, 409, "ticket_expired",
                             "the queue ticket has expired; retry without it to get a new place");
            return 1;
        }
        if (rc != FS_OK) {
            fs__answer_error(c, -1, 400, "invalid_ticket",
                             rc == FS_WR_FORGED ? "X-Queue-Ticket: signature does not match"
                                                : "X-Queue-Ticket is malformed");
            return 1;
        }
        if (strcmp(t.launch, c->launch) != 0 || t.user_len != c->user_len ||
            memcmp(t.user, c->user, t.user_len) != 0) {
            fs__answer_error(c, -1, 403, "ticket_mismatch",
                             "the queue ticket is for another launch or shopper");
            return 1;
        }
        c->wr_pos = t.position;
        c->wr_turn_ms = t.turn_ms;
    }
    const fs__wr_slot_t *s = fs__slot(wr, c->launch);
    if (s->at_ns && s->admit_milli == 0 && strcmp(s->launch, c->launch) == 0 &&
        fs_mono_ns() - s->at_ns < FS__WR_CACHE_NS)
        return 0; /* no room: the rush path as if this file did not exist */
    char k[4][FS_ID_MAX * 2 + 24], qty[16], pos[24], turn[24];
    snprintf(k[0], sizeof k[0], "fs:launch:{%s}", c->launch);
    snprintf(k[1], sizeof k[1], "fs:wr:{%s}", c->launch);
    snprintf(k[2], sizeof k[2], "fs:wr:{%s}:users", c->launch);
    snprintf(k[3], sizeof k[3], "fs:{%s:%s}:sku", c->launch, c->sku);
    snprintf(qty, sizeof qty, "%d", c->item.qty);
    snprintf(pos, sizeof pos, "%lld", (long long)c->wr_pos);
    snprintf(turn, sizeof turn, "%lld", (long long)c->wr_turn_ms);
    const char *argv[] = {"FCALL", FS_FN("fs_wr_pass"), "4", k[0], k[1], k[2], k[3], c->user, qty,
                          pos, turn};
    size_t lens[11];
    for (int i = 0; i < 11; i++) lens[i] = strlen(argv[i]);
    lens[7] = c->user_len;
    fs_stock_command(c->api->stock, fs__on_pass, c, 11, argv, lens);
    return 1;
}

/* ---- operator side ---- */

void fs_api_waiting_room_setting(fs_api_t *api, const char *launch, int64_t admit_milli,
                                 fs_redis_cb cb, void *arg)
{
    char k[FS_ID_MAX + 16], v[24];
    snprintf(k, sizeof k, "fs:launch:{%s}", launch);
    snprintf(v, sizeof v, "%lld", (long long)admit_milli);
    if (admit_milli >= 0) fs__slot(fs__wr(api), launch)->at_ns = 0;
    const char *argv[] = {"FCALL", FS_FN("fs_launch_waiting_room"), "1", k, v};
    size_t lens[5];
    for (int i = 0; i < 5; i++) lens[i] = strlen(argv[i]);
    fs_stock_command(api->stock, cb, arg, 5, argv, lens);
}

void fs_api_waiting_room_json(fs_buf_t *o, int64_t admit_milli)
{
    if (admit_milli < 0 || !o->len || o->data[o->len - 1] != '}') return;
    o->len--;
    if (admit_milli == 0)
        fs_buf_puts(o, ",\"waiting_room\":null}");
    else
        fs_buf_printf(o, ",\"waiting_room\":{\"admit_per_sec\":%lld.%03lld}}",
                      (long long)(admit_milli / 1000), (long long)(admit_milli % 1000));
}
