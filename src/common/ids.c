/* Identifiers, random ids and constant-time secret checks (see ids.h). */
#include "ids.h"
#include "log.h"
#include "flashsale/error.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

int fs_id_valid(const char *s, size_t n)
{
    if (n == 0 || n > FS_ID_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '~' || c == '-'))
            return 0;
    }
    return 1;
}

int fs_user_valid(const char *s, size_t n)
{
    if (n == 0 || n > FS_ID_MAX) return 0;
    for (size_t i = 0; i < n;) {
        /* Printable ASCII, most user ids whole, in a tight loop (every reservation checks one). */
        while (i < n && (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f) i++;
        if (i == n) break;
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) return 0;
        size_t extra;
        if (c < 0x80) extra = 0;
        else if ((c & 0xe0) == 0xc0 && c >= 0xc2) extra = 1;
        else if ((c & 0xf0) == 0xe0) extra = 2;
        else if ((c & 0xf8) == 0xf0 && c <= 0xf4) extra = 3;
        else return 0;
        if (extra && i + extra >= n) return 0;
        for (size_t k = 1; k <= extra; k++)
            if (((unsigned char)s[i + k] & 0xc0) != 0x80) return 0;
        if (extra == 1 && c == 0xc2 && (unsigned char)s[i + 1] < 0xa0) return 0; /* C1 controls */
        i += extra + 1;
    }
    return 1;
}

static const char fs__b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t fs_b64url_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = fs__b64[v >> 18];
        out[o++] = fs__b64[(v >> 12) & 63];
        out[o++] = fs__b64[(v >> 6) & 63];
        out[o++] = fs__b64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = fs__b64[v >> 18];
        out[o++] = fs__b64[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = fs__b64[v >> 18];
        out[o++] = fs__b64[(v >> 12) & 63];
        out[o++] = fs__b64[(v >> 6) & 63];
    }
    out[o] = 0;
    return o;
}

static int fs__b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

int fs_b64url_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    if (n % 4 == 1) return FS_EINVAL;
    size_t outlen = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    if (outlen > cap) return FS_EINVAL;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = fs__b64val((unsigned char)in[i]);
        if (v < 0) return FS_EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) return FS_EINVAL; /* non-canonical trailing bits */
    return (int)o;
}

void fs_random_bytes(void *buf, size_t n)
{
    static _Thread_local uint8_t pool[4096];
    static _Thread_local size_t left;
    if (n > sizeof pool / 4) {
        if (RAND_bytes(buf, (int)n) != 1) goto fail;
        return;
    }
    if (left < n) {
        if (RAND_bytes(pool, sizeof pool) != 1) goto fail;
        left = sizeof pool;
    }
    /* Hand out each pooled byte once, and wipe it. */
    memcpy(buf, pool + sizeof pool - left, n);
    memset(pool + sizeof pool - left, 0, n);
    left -= n;
    return;
fail:
    fs_error("random_failed", "bytes=%zu", n);
    abort();
}

static size_t fs__id_new(uint8_t version, const char *launch, size_t ll, const char *sku, size_t sl,
                         char *out)
{
    uint8_t raw[1 + 1 + FS_ID_MAX + 1 + FS_ID_MAX + 16];
    size_t o = 0;
    fs_assert(ll <= FS_ID_MAX && sl <= FS_ID_MAX);
    raw[o++] = version;
    raw[o++] = (uint8_t)ll;
    memcpy(raw + o, launch, ll);
    o += ll;
    raw[o++] = (uint8_t)sl;
    memcpy(raw + o, sku, sl);
    o += sl;
    fs_random_bytes(raw + o, 16);
    o += 16;
    return fs_b64url_encode(raw, o, out);
}

size_t fs_rid_new(const char *launch, size_t ll, const char *sku, size_t sl, char *out)
{
    return fs__id_new(1, launch, ll, sku, sl, out);
}

size_t fs_group_new(const char *launch, size_t ll, const char *sku, size_t sl, char *out)
{
    return fs__id_new(2, launch, ll, sku, sl, out);
}

int fs_rid_parse(const char *rid, size_t n, char *launch, char *sku)
{
    uint8_t raw[1 + 1 + FS_ID_MAX + 1 + FS_ID_MAX + 16];
    if (n > FS_RID_MAX) return FS_EINVAL;
    /* A grouped id ends in ".<i>": i = 1..FS_GROUP_MAX, decimal, no leading zero. */
    uint8_t version = 1;
    const char *dot = memchr(rid, '.', n);
    if (dot) {
        const char *d = dot + 1, *end = rid + n;
        long i = 0;
        if (d == end || end - d > 4 || *d == '0') return FS_EINVAL;
        for (; d < end; d++) {
            if (*d < '0' || *d > '9') return FS_EINVAL;
            i = i * 10 + (*d - '0');
        }
        if (i > FS_GROUP_MAX) return FS_EINVAL;
        n = (size_t)(dot - rid);
        version = 2;
    }
    int len = fs_b64url_decode(rid, n, raw, sizeof raw);
    if (len < 1 + 1 + 1 + 1 + 1 + 16 || raw[0] != version) return FS_EINVAL;
    size_t p = 1, ll = raw[p++];
    if (ll == 0 || ll > FS_ID_MAX || p + ll + 1 > (size_t)len) return FS_EINVAL;
    memcpy(launch, raw + p, ll);
    launch[ll] = 0;
    p += ll;
    size_t sl = raw[p++];
    if (sl == 0 || sl > FS_ID_MAX || p + sl + 16 != (size_t)len) return FS_EINVAL;
    memcpy(sku, raw + p, sl);
    sku[sl] = 0;
    if (!fs_id_valid(launch, ll) || !fs_id_valid(sku, sl)) return FS_EINVAL;
    return FS_OK;
}

size_t fs_order_id_new(char *out)
{
    uint8_t raw[16];
    fs_random_bytes(raw, sizeof raw);
    out[0] = 'o';
    out[1] = '_';
    return 2 + fs_b64url_encode(raw, sizeof raw, out + 2);
}

void fs_secret_set_add_csv(fs_secret_set_t *set, const char *csv)
{
    const char *p = csv;
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *s = p;
        while (n && (*s == ' ' || *s == '\t')) s++, n--;
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
        if (n) {
            set->items = fs_xrealloc(set->items, (set->count + 1) * sizeof *set->items);
            set->items[set->count].p = fs_xstrndup(s, n);
            set->items[set->count].n = n;
            set->count++;
        }
        p = end ? end + 1 : NULL;
    }
}

int fs_secret_set_match(const fs_secret_set_t *set, const char *token, size_t n)
{
    int found = -1;
    for (size_t i = 0; i < set->count; i++) {
        /* Compare against every secret, so the time does not say which one matched. */
        if (set->items[i].n == n && CRYPTO_memcmp(token, set->items[i].p, n) == 0 && found < 0)
            found = (int)i;
    }
    return found;
}

void fs_secret_set_free(fs_secret_set_t *set)
{
    for (size_t i = 0; i < set->count; i++) {
        OPENSSL_cleanse(set->items[i].p, set->items[i].n);
        free(set->items[i].p);
    }
    free(set->items);
    set->items = NULL;
    set->count = 0;
}
