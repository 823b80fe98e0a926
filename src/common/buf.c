/* Growable buffer and JSON writer (see buf.h). */
#include "buf.h"
#include "log.h"
#include "timeutil.h"

#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

void fs_buf_init(fs_buf_t *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void fs_buf_free(fs_buf_t *b)
{
    free(b->data);
    fs_buf_init(b);
}

void fs_buf_reserve(fs_buf_t *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    b->data = fs_xrealloc(b->data, cap);
    b->cap = cap;
}

void fs_buf_append(fs_buf_t *b, const void *p, size_t n)
{
    fs_buf_reserve(b, n);
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

void fs_buf_puts(fs_buf_t *b, const char *s)
{
    fs_buf_append(b, s, strlen(s));
}

void fs_buf_putc(fs_buf_t *b, char c)
{
    fs_buf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = 0;
}

void fs_buf_printf(fs_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0) return;
    fs_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

size_t fs_fmt_i64(char *out, int64_t v)
{
    char tmp[FS_I64_MAX_LEN];
    size_t n = 0, len = 0;
    /* Negated as unsigned, so INT64_MIN works too. */
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) out[len++] = '-';
    while (n) out[len++] = tmp[--n];
    return len;
}

void fs_buf_i64(fs_buf_t *b, int64_t v)
{
    char tmp[FS_I64_MAX_LEN];
    fs_buf_append(b, tmp, fs_fmt_i64(tmp, v));
}

void fs_buf_consume(fs_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data) b->data[b->len] = 0;
}

/* Bytes a JSON string must escape: the control characters, '"' and '\\'. */
static const unsigned char fs__json_escape[256] = {[0 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1};

void fs_json_str(fs_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    /* Room for the usual case (nothing to escape) at once, written in place; each escape makes
     * room for itself and the rest. Every response of the rush path goes through here. */
    fs_buf_reserve(b, n + 2);
    char *o = b->data + b->len;
    *o++ = '"';
    size_t i = 0;
    for (;;) {
        size_t run = i;
        while (i < n && !fs__json_escape[(unsigned char)s[i]]) i++;
        memcpy(o, s + run, i - run);
        o += i - run;
        if (i == n) break;
        unsigned char c = (unsigned char)s[i++];
        b->len = (size_t)(o - b->data);
        fs_buf_reserve(b, 6 + (n - i) + 1); /* this escape, the rest, the closing quote */
        o = b->data + b->len;
        *o++ = '\\';
        if (c == '"' || c == '\\') {
            *o++ = (char)c;
        } else {
            memcpy(o, "u00", 3);
            o[3] = hex[c >> 4];
            o[4] = hex[c & 15];
            o += 5;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = 0;
}

void fs_json_cstr(fs_buf_t *b, const char *s)
{
    fs_json_str(b, s, strlen(s));
}

void fs_json_key(fs_buf_t *b, int *first, const char *key)
{
    if (!*first) fs_buf_putc(b, ',');
    *first = 0;
    fs_json_cstr(b, key);
    fs_buf_putc(b, ':');
}

void fs_json_kv_str(fs_buf_t *b, int *first, const char *key, const char *s, size_t n)
{
    fs_json_key(b, first, key);
    fs_json_str(b, s, n);
}

void fs_json_kv_cstr(fs_buf_t *b, int *first, const char *key, const char *s)
{
    fs_json_kv_str(b, first, key, s, strlen(s));
}

void fs_json_kv_i64(fs_buf_t *b, int *first, const char *key, int64_t v)
{
    fs_json_key(b, first, key);
    fs_buf_i64(b, v);
}

void fs_json_error(fs_buf_t *b, const char *code, const char *message)
{
    /* Every sold_out answer of the rush comes through here: the fixed parts are copied, not
     * built key by key (that cost as much as the rest of a sold-out answer's body). */
    static const char k_error[] = "{\"error\":", k_message[] = ",\"message\":";
    fs_buf_reset(b);
    fs_buf_append(b, k_error, sizeof k_error - 1);
    fs_json_str(b, code, strlen(code));
    fs_buf_append(b, k_message, sizeof k_message - 1);
    fs_json_str(b, message, strlen(message));
    fs_buf_putc(b, '}');
}

void fs_json_kv_time(fs_buf_t *b, int *first, const char *key, int64_t ms, int null_if_zero)
{
    fs_json_key(b, first, key);
    if (ms <= 0 && null_if_zero) {
        fs_buf_puts(b, "null");
        return;
    }
    char t[32];
    size_t n = fs_time_format_ms(ms, t, sizeof t);
    fs_json_str(b, t, n);
}
