/* Unit tests for src/common/timeutil.c: RFC 3339 formatting and parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/timeutil.h"
#include "flashsale/error.h"

static void test_format(void **state)
{
    char out[32];
    assert_int_equal(fs_time_format_ms(0, out, sizeof out), 24);
    assert_string_equal(out, "1970-01-01T00:00:00.000Z");
    fs_time_format_ms(1795743301025LL, out, sizeof out);
    assert_string_equal(out, "2026-11-27T01:35:01.025Z");
    assert_int_equal(fs_time_format_ms(0, out, 10), 0);
}

static int64_t parse(const char *s)
{
    int64_t ms = -1;
    if (fs_time_parse_rfc3339(s, strlen(s), &ms) != FS_OK) return -1;
    return ms;
}

static void test_parse_good(void **state)
{
    assert_int_equal(parse("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(parse("2026-11-27T01:35:01.025Z"), 1795743301025LL);
    assert_int_equal(parse("2026-11-27T01:35:01.5Z"), 1795743301500LL);
    assert_int_equal(parse("2026-11-27t01:35:01z"), 1795743301000LL);
    /* 10:00 in Beijing is 02:00 UTC. */
    assert_int_equal(parse("2026-11-27T10:00:00+08:00"), parse("2026-11-27T02:00:00Z"));
    assert_int_equal(parse("2026-11-26T21:00:00-05:00"), parse("2026-11-27T02:00:00Z"));
    assert_int_equal(parse("2024-02-29T00:00:00Z"), 1709164800000LL);
}

static void test_parse_bad(void **state)
{
    const char *bad[] = {"", "2026-11-27", "2026-11-27T01:35:01", "2026-13-01T00:00:00Z",
                         "2026-02-30T00:00:00Z", "2026-11-27T24:00:00Z", "2026-11-27T01:35:01.Z",
                         "2026-11-27T01:35:01Zjunk", "2026-11-27T01:35:01+0800", "tomorrow",
                         "2025-02-29T00:00:00Z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms;
        assert_int_equal(fs_time_parse_rfc3339(bad[i], strlen(bad[i]), &ms), FS_EINVAL);
    }
}

static void test_roundtrip(void **state)
{
    char out[32];
    for (int64_t ms = 1600000000123LL; ms < 1900000000000LL; ms += 7777777777LL) {
        size_t n = fs_time_format_ms(ms, out, sizeof out);
        int64_t back;
        assert_int_equal(fs_time_parse_rfc3339(out, n, &back), FS_OK);
        assert_int_equal(back, ms);
    }
}

/* The per-thread cache of formatted seconds: interleaving answers from three different seconds
 * (as now and expiry times do, plus a third) must never mix one second's digits into another. */
static void test_cache_interleaved(void **state)
{
    const int64_t secs[] = {1795743301LL, 1795746901LL, 1795743302LL, 1600000000LL};
    const int order[] = {0, 1, 0, 1, 2, 1, 0, 3, 3, 2, 0, 1, 3, 0};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        int64_t ms = secs[order[i]] * 1000 + (int64_t)(i * 37 % 1000);
        char out[32], want[32];
        time_t t = (time_t)secs[order[i]];
        struct tm tm;
        gmtime_r(&t, &tm);
        size_t n = strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(want + n, sizeof want - n, ".%03dZ", (int)(ms % 1000));
        assert_int_equal(fs_time_format_ms(ms, out, sizeof out), 24);
        assert_string_equal(out, want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format), cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad), cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_cache_interleaved)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
