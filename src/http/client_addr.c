/* Client addresses (see http.h): trusted proxy lists (IPs and CIDRs) and X-Forwarded-For.
 *
 * Addresses are kept as 16 bytes, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), so that one
 * comparison serves both families; an IPv4 CIDR /n is stored as /(96+n). */
#include "http.h"
#include "flashsale/error.h"
#include "../common/log.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t fs__v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

int fs_http_addr_parse(const char *s, size_t n, uint8_t out[16])
{
    char tmp[64];
    /* "[v6]" and "[v6]:port" as some proxies write them; "a.b.c.d:port" too. */
    if (n >= 2 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close) return FS_EINVAL;
        s++;
        n = (size_t)(close - s);
    } else if (memchr(s, '.', n)) {
        const char *colon = memchr(s, ':', n);
        if (colon && !memchr(colon + 1, ':', n - (size_t)(colon - s) - 1)) n = (size_t)(colon - s);
    }
    if (n == 0 || n >= sizeof tmp) return FS_EINVAL;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    struct in_addr a4;
    if (inet_pton(AF_INET, tmp, &a4) == 1) {
        memcpy(out, fs__v4mapped, 12);
        memcpy(out + 12, &a4, 4);
        return FS_OK;
    }
    if (inet_pton(AF_INET6, tmp, out) == 1) return FS_OK;
    return FS_EINVAL;
}

void fs_http_addr_text(const uint8_t a[16], char out[FS_HTTP_ADDR_MAX])
{
    if (memcmp(a, fs__v4mapped, 12) == 0) inet_ntop(AF_INET, a + 12, out, FS_HTTP_ADDR_MAX);
    else inet_ntop(AF_INET6, a, out, FS_HTTP_ADDR_MAX);
}

int fs_http_cidrs_parse(const char *csv, fs_http_cidr_t **out, size_t *count, char *err,
                        size_t errcap)
{
    fs_http_cidr_t *v = NULL;
    size_t n = 0;
    const char *p = csv ? csv : "";
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (!*p) break;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t') p++;
        size_t len = (size_t)(p - start);
        const char *slash = memchr(start, '/', len);
        size_t al = slash ? (size_t)(slash - start) : len;
        fs_http_cidr_t c;
        char tmp[64];
        struct in_addr a4;
        int ok = al > 0 && al < sizeof tmp, v4 = 0;
        if (ok) {
            memcpy(tmp, start, al);
            tmp[al] = 0;
            if (inet_pton(AF_INET, tmp, &a4) == 1) {
                memcpy(c.addr, fs__v4mapped, 12);
                memcpy(c.addr + 12, &a4, 4);
                v4 = 1;
            } else {
                ok = inet_pton(AF_INET6, tmp, c.addr) == 1;
            }
        }
        int bits = v4 ? 32 : 128;
        if (ok && slash) {
            char *end;
            long b = strtol(slash + 1, &end, 10);
            if (end != start + len || slash + 1 == end || b < 0 || b > bits) ok = 0;
            else bits = (int)b;
        }
        if (!ok) {
            snprintf(err, errcap, "trusted_proxies: %.*s is not an IP address or CIDR",
                     (int)(len > 64 ? 64 : len), start);
            free(v);
            return FS_EINVAL;
        }
        c.bits = (uint8_t)(v4 ? bits + 96 : bits);
        /* Clear the host bits so that matching is a plain prefix comparison. */
        for (int i = c.bits; i < 128; i++) c.addr[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
        v = fs_xrealloc(v, (n + 1) * sizeof *v);
        v[n++] = c;
    }
    *out = v;
    *count = n;
    return FS_OK;
}

int fs_http_cidrs_match(const fs_http_cidr_t *v, size_t n, const uint8_t a[16])
{
    for (size_t k = 0; k < n; k++) {
        int bits = v[k].bits, full = bits / 8, rest = bits % 8;
        if (memcmp(v[k].addr, a, (size_t)full) != 0) continue;
        if (rest && ((a[full] ^ v[k].addr[full]) & (uint8_t)(0xff00u >> rest))) continue;
        return 1;
    }
    return 0;
}

int fs_http_xff_client(const char *xff, size_t n, const fs_http_cidr_t *trusted, size_t ntrusted,
                       uint8_t out[16])
{
    int found = 0;
    size_t end = n;
    /* Right to left: the right-most entries were written by our own proxies. */
    for (;;) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',') start--;
        size_t a = start, b = end;
        while (a < b && (xff[a] == ' ' || xff[a] == '\t')) a++;
        while (b > a && (xff[b - 1] == ' ' || xff[b - 1] == '\t')) b--;
        if (a < b) {
            uint8_t addr[16];
            if (fs_http_addr_parse(xff + a, b - a, addr) != FS_OK) return FS_EINVAL;
            memcpy(out, addr, 16);
            found = 1;
            if (!fs_http_cidrs_match(trusted, ntrusted, addr)) return 1;
        }
        if (start == 0) break;
        end = start - 1;
    }
    return found ? 0 : FS_EINVAL;
}
