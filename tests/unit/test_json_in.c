/* Unit tests for src/api/json_in.c: jsmn-based body reading. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "api/json_in.h"
#include "flashsale/error.h"

static int parse(fs_json_doc_t *d, const char *s)
{
    return fs_json_parse(d, s, strlen(s));
}

static void test_find_and_types(void **state)
{
    fs_json_doc_t d;
    char out[64];
    size_t n;
    int64_t v;
    assert_int_equal(parse(&d, "{\"a\":{\"sku\":\"inner\"},\"list\":[1,[2,3],{\"x\":1}],\"sku\":\"black\","
                               "\"qty\":3,\"neg\":-2,\"f\":1.5,\"z\":null}"), FS_OK);
    int t = fs_json_find(&d, 0, "sku");
    assert_int_equal(fs_json_string(&d, t, out, sizeof out, &n), FS_OK);
    assert_string_equal(out, "black"); /* not the nested one */
    assert_int_equal(fs_json_int(&d, fs_json_find(&d, 0, "qty"), &v), FS_OK);
    assert_int_equal(v, 3);
    assert_int_equal(fs_json_int(&d, fs_json_find(&d, 0, "neg"), &v), FS_OK);
    assert_int_equal(v, -2);
    assert_int_equal(fs_json_int(&d, fs_json_find(&d, 0, "f"), &v), FS_EINVAL);
    assert_int_equal(fs_json_int(&d, fs_json_find(&d, 0, "sku"), &v), FS_EINVAL);
    assert_int_equal(fs_json_string(&d, fs_json_find(&d, 0, "qty"), out, sizeof out, &n), FS_EINVAL);
    assert_true(fs_json_is_null(&d, fs_json_find(&d, 0, "z")));
    assert_int_equal(fs_json_find(&d, 0, "missing"), -1);
}

static void test_strings(void **state)
{
    fs_json_doc_t d;
    char out[16];
    size_t n;
    assert_int_equal(parse(&d, "{\"u\":\"a\\\"\\\\\\/\\n\\u00e9\\ud83d\\ude00\"}"), FS_OK);
    assert_int_equal(fs_json_string(&d, fs_json_find(&d, 0, "u"), out, sizeof out, &n), FS_OK);
    assert_string_equal(out, "a\"\\/\n\xc3\xa9\xf0\x9f\x98\x80");
    assert_int_equal(n, 11);
    assert_int_equal(parse(&d, "{\"u\":\"\\ud83d\"}"), FS_OK); /* lone surrogate */
    assert_int_equal(fs_json_string(&d, fs_json_find(&d, 0, "u"), out, sizeof out, &n), FS_EINVAL);
    assert_int_equal(parse(&d, "{\"u\":\"0123456789abcdef\"}"), FS_OK); /* does not fit */
    assert_int_equal(fs_json_string(&d, fs_json_find(&d, 0, "u"), out, sizeof out, &n), FS_EINVAL);
}

static void test_rejects(void **state)
{
    fs_json_doc_t d;
    const char *bad[] = {"",           "[]",          "\"x\"",       "{",
                         "{\"a\":}",     "{\"a\":1} x",  "{'a':1}",     "{\"a\":tru}",
                         "{\"a\":1,}",   "{\"a\":[1,]}", "{\"a\":[,1]}", "{,\"a\":1}",
                         "{\"a\":1,,\"b\":2}", "{\"a\":[1,,2]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(parse(&d, bad[i]), FS_EINVAL);
    assert_int_equal(parse(&d, " {\"a\":1}\n"), FS_OK);
    /* commas and brackets inside strings are text */
    assert_int_equal(parse(&d, "{\"a\":\",}\",\"b\":[\"[,\", \"\\\",]\"]}"), FS_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_find_and_types),
                                       cmocka_unit_test(test_strings), cmocka_unit_test(test_rejects)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
