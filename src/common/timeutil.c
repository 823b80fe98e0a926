/* Clocks and RFC 3339 formatting/parsing (see timeutil.h). */
#include "timeutil.h"
#include "flashsale/error.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t fs_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t fs_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fs__2(char *p, int v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

size_t fs_time_format_ms(int64_t ms, char *out, size_t cap)
{
    /* Hot: every reservation answer carries two times, now and the hold's expiry. The date and
     * time of day come from a per-thread cache of the last two seconds formatted (one slot for
     * each of those two), so only the milliseconds change from answer to answer. */
    static _Thread_local time_t cached_sec[2] = {(time_t)-1, (time_t)-1};
    static _Thread_local char cached[2][20]; /* "2026-11-27T01:02:03" */
    static _Thread_local int victim;
    if (cap < 25) return 0;
    time_t secs = (time_t)(ms / 1000);
    int frac = (int)(ms % 1000);
    if (frac < 0) {
        frac += 1000;
        secs -= 1;
    }
    int slot = cached_sec[0] == secs ? 0 : cached_sec[1] == secs ? 1 : -1;
    if (slot < 0) {
        struct tm tm;
        gmtime_r(&secs, &tm);
        if (tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) return 0;
        slot = victim;
        victim ^= 1;
        char *c = cached[slot];
        int y = tm.tm_year + 1900;
        fs__2(c, y / 100);
        fs__2(c + 2, y % 100);
        c[4] = '-';
        fs__2(c + 5, tm.tm_mon + 1);
        c[7] = '-';
        fs__2(c + 8, tm.tm_mday);
        c[10] = 'T';
        fs__2(c + 11, tm.tm_hour);
        c[13] = ':';
        fs__2(c + 14, tm.tm_min);
        c[16] = ':';
        fs__2(c + 17, tm.tm_sec);
        cached_sec[slot] = secs;
    }
    memcpy(out, cached[slot], 19);
    out[19] = '.';
    out[20] = (char)('0' + frac / 100);
    fs__2(out + 21, frac % 100);
    out[23] = 'Z';
    out[24] = 0;
    return 24;
}

static int fs__digits(const char *s, size_t len, size_t *pos, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (*pos >= len || s[*pos] < '0' || s[*pos] > '9') return FS_EINVAL;
        v = v * 10 + (s[(*pos)++] - '0');
    }
    *out = v;
    return FS_OK;
}

static int fs__expect(const char *s, size_t len, size_t *pos, char c)
{
    if (*pos >= len || (s[*pos] != c && !(c == 'T' && (s[*pos] == 't' || s[*pos] == ' '))))
        return FS_EINVAL;
    (*pos)++;
    return FS_OK;
}

int fs_time_parse_rfc3339(const char *s, size_t len, int64_t *out_ms)
{
    size_t p = 0;
    int y, mo, d, h, mi, se, ms = 0;
    if (fs__digits(s, len, &p, 4, &y) || fs__expect(s, len, &p, '-') ||
        fs__digits(s, len, &p, 2, &mo) || fs__expect(s, len, &p, '-') ||
        fs__digits(s, len, &p, 2, &d) || fs__expect(s, len, &p, 'T') ||
        fs__digits(s, len, &p, 2, &h) || fs__expect(s, len, &p, ':') ||
        fs__digits(s, len, &p, 2, &mi) || fs__expect(s, len, &p, ':') ||
        fs__digits(s, len, &p, 2, &se))
        return FS_EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return FS_EINVAL;
    if (p < len && s[p] == '.') {
        p++;
        int scale = 100, any = 0;
        while (p < len && s[p] >= '0' && s[p] <= '9') {
            ms += (s[p++] - '0') * scale;
            scale /= 10;
            any = 1;
        }
        if (!any) return FS_EINVAL;
    }
    int offset_min = 0;
    if (p < len && (s[p] == 'Z' || s[p] == 'z')) {
        p++;
    } else if (p < len && (s[p] == '+' || s[p] == '-')) {
        int sign = s[p++] == '-' ? -1 : 1, oh, om;
        if (fs__digits(s, len, &p, 2, &oh) || fs__expect(s, len, &p, ':') ||
            fs__digits(s, len, &p, 2, &om) || oh > 23 || om > 59)
            return FS_EINVAL;
        offset_min = sign * (oh * 60 + om);
    } else {
        return FS_EINVAL;
    }
    if (p != len) return FS_EINVAL;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
                    .tm_hour = h, .tm_min = mi, .tm_sec = se};
    time_t t = timegm(&tm);
    if (tm.tm_mday != d) return FS_EINVAL; /* e.g. February 30th */
    *out_ms = ((int64_t)t - (int64_t)offset_min * 60) * 1000 + ms;
    return FS_OK;
}
