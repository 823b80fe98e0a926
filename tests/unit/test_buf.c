/* Unit tests for src/common/buf.c: growth and JSON writing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/buf.h"

static void test_growth(void **state)
{
    fs_buf_t b;
    fs_buf_init(&b);
    for (int i = 0; i < 10000; i++) fs_buf_putc(&b, (char)('a' + i % 26));
    assert_int_equal(b.len, 10000);
    assert_int_equal(b.data[b.len], 0);
    fs_buf_consume(&b, 9998);
    assert_string_equal(b.data, "op");
    fs_buf_printf(&b, "-%d-", 42);
    fs_buf_i64(&b, -9000000000LL);
    assert_string_equal(b.data, "op-42--9000000000");
    fs_buf_free(&b);
}

/* fs_fmt_i64 against printf, at the edges and around every power of ten. */
static void test_fmt_i64(void **state)
{
    int64_t cases[200];
    size_t n = 0;
    cases[n++] = 0;
    cases[n++] = INT64_MAX;
    cases[n++] = INT64_MIN;
    cases[n++] = INT64_MIN + 1;
    for (int64_t p = 1; p <= INT64_MAX / 10; p *= 10) {
        cases[n++] = p;
        cases[n++] = p - 1;
        cases[n++] = -p;
        cases[n++] = -(p - 1);
        cases[n++] = p + 7;
    }
    for (size_t i = 0; i < n; i++) {
        char got[FS_I64_MAX_LEN + 1], want[32];
        got[fs_fmt_i64(got, cases[i])] = 0;
        snprintf(want, sizeof want, "%lld", (long long)cases[i]);
        assert_string_equal(got, want);
    }
}

static void test_json(void **state)
{
    fs_buf_t b;
    fs_buf_init(&b);
    int first = 1;
    fs_buf_putc(&b, '{');
    fs_json_kv_cstr(&b, &first, "s", "a\"b\\c\n\x01\xe5\xbc\xa0");
    fs_json_kv_i64(&b, &first, "n", -5);
    fs_json_kv_time(&b, &first, "t", 0, 1);
    fs_json_kv_time(&b, &first, "u", 1795743301025LL, 1);
    fs_buf_putc(&b, '}');
    assert_string_equal(b.data, "{\"s\":\"a\\\"b\\\\c\\u000a\\u0001\xe5\xbc\xa0\",\"n\":-5,\"t\":null,"
                                "\"u\":\"2026-11-27T01:35:01.025Z\"}");
    fs_buf_free(&b);
}

/* An error document replaces what the buffer held; code and message are escaped. */
static void test_json_error(void **state)
{
    (void)state;
    fs_buf_t b;
    fs_buf_init(&b);
    fs_buf_puts(&b, "an earlier body");
    fs_json_error(&b, "sold_out", "fewer units are available than requested");
    assert_string_equal(b.data, "{\"error\":\"sold_out\","
                                "\"message\":\"fewer units are available than requested\"}");
    fs_json_error(&b, "bad\"code", "line\nbreak");
    assert_string_equal(b.data, "{\"error\":\"bad\\\"code\",\"message\":\"line\\u000abreak\"}");
    assert_int_equal(b.len, strlen(b.data));
    fs_buf_free(&b);
}

/* Every byte value, in runs long enough that the buffer grows in the middle of escapes, against
 * a byte-by-byte reference. */
static void test_json_escapes_grow(void **state)
{
    (void)state;
    char in[3 * 256];
    for (int i = 0; i < 3 * 256; i++) in[i] = (char)(i % 256 == 0 ? 1 : i % 256);
    fs_buf_t want;
    fs_buf_init(&want);
    fs_buf_putc(&want, '"');
    for (size_t i = 0; i < sizeof in; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '"' || c == '\\') fs_buf_printf(&want, "\\%c", c);
        else if (c < 0x20) fs_buf_printf(&want, "\\u%04x", c);
        else fs_buf_putc(&want, (char)c);
    }
    fs_buf_putc(&want, '"');
    /* What the buffer already holds moves the points where it has to grow. */
    for (size_t pre = 0; pre <= 600; pre += 37) {
        fs_buf_t b;
        fs_buf_init(&b);
        for (size_t i = 0; i < pre; i++) fs_buf_putc(&b, 'x');
        fs_json_str(&b, in, sizeof in);
        assert_int_equal(b.len, pre + want.len);
        assert_memory_equal(b.data + pre, want.data, want.len);
        assert_int_equal(b.data[b.len], 0);
        fs_buf_free(&b);
    }
    fs_buf_free(&want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_growth),
                                       cmocka_unit_test(test_fmt_i64), cmocka_unit_test(test_json),
                                       cmocka_unit_test(test_json_escapes_grow),
                                       cmocka_unit_test(test_json_error)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
