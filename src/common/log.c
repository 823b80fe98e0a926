/* Logging, assertions and aborting allocation helpers (see log.h). */
#include "log.h"
#include "timeutil.h"
#include "flashsale/error.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic int fs__level = FS_LOG_INFO;
static const char *const fs__names[] = {"debug", "info", "warn", "error"};

void fs_log_set_level(fs_log_level_t level)
{
    fs__level = level;
}

fs_log_level_t fs_log_get_level(void)
{
    return (fs_log_level_t)fs__level;
}

int fs_log_parse_level(const char *s, fs_log_level_t *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, fs__names[i]) == 0) {
            *out = (fs_log_level_t)i;
            return FS_OK;
        }
    }
    return FS_EINVAL;
}

void fs_log(fs_log_level_t level, const char *event, const char *fmt, ...)
{
    if ((int)level < fs__level) return;
    char line[2048];
    char ts[32];
    fs_time_format_ms(fs_wall_ms(), ts, sizeof ts);
    int n = snprintf(line, sizeof line, "ts=%s level=%s event=%s", ts, fs__names[level], event);
    if (n < 0) return;
    if (fmt && fmt[0] && (size_t)n < sizeof line - 1) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0) n += m;
    }
    if ((size_t)n >= sizeof line - 1) n = (int)sizeof line - 2;
    line[n++] = '\n';
    /* One write per line keeps lines whole when several threads log. */
    fwrite(line, 1, (size_t)n, stderr);
}

char *fs_log_quote(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    if (cap < 3) {
        if (cap) out[0] = 0;
        return out;
    }
    out[o++] = '"';
    for (; *s && o + 5 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = 0;
    return out;
}

void fs_panic(const char *file, int line, const char *what)
{
    fs_log(FS_LOG_ERROR, "assertion_failed", "file=%s line=%d cond=\"%s\"", file, line, what);
    abort();
}

static void *fs__oom(size_t n)
{
    fs_log(FS_LOG_ERROR, "out_of_memory", "bytes=%zu", n);
    abort();
}

void *fs_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    return p ? p : fs__oom(n);
}

void *fs_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    return p ? p : fs__oom(n * size);
}

void *fs_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    return q ? q : fs__oom(n);
}

char *fs_xstrndup(const char *s, size_t n)
{
    char *p = fs_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

const char *fs_strerror(int code)
{
    switch (code) {
    case FS_OK: return "ok";
    case FS_EAGAIN: return "again";
    case FS_EINVAL: return "invalid";
    case FS_ENOMEM: return "no_memory";
    case FS_ENOTFOUND: return "not_found";
    case FS_EUNAVAIL: return "unavailable";
    case FS_ETIMEDOUT: return "timed_out";
    case FS_EPROTO: return "protocol";
    case FS_EIO: return "io";
    default: return "unknown";
    }
}
