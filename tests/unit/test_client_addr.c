/* Unit tests for src/http/client_addr.c: trusted proxy lists and X-Forwarded-For. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

static fs_http_cidr_t *trusted;
static size_t ntrusted;

static int setup(void **state)
{
    (void)state;
    char err[128];
    return fs_http_cidrs_parse(" 10.0.0.0/8,192.168.1.7 , ::1, fd00::/8", &trusted, &ntrusted, err,
                               sizeof err);
}

static int teardown(void **state)
{
    (void)state;
    free(trusted);
    return 0;
}

static int in_list(const char *a)
{
    uint8_t b[16];
    assert_int_equal(fs_http_addr_parse(a, strlen(a), b), 0);
    return fs_http_cidrs_match(trusted, ntrusted, b);
}

/* Runs fs_http_xff_client and renders its answer ("-" for FS_EINVAL, "=A" when all trusted). */
static const char *xff(const char *v)
{
    static char out[FS_HTTP_ADDR_MAX + 1];
    uint8_t a[16];
    int rc = fs_http_xff_client(v, strlen(v), trusted, ntrusted, a);
    if (rc < 0) return "-";
    out[0] = '=';
    fs_http_addr_text(a, out + 1);
    return rc == 0 ? out : out + 1;
}

static void test_parse_list(void **state)
{
    (void)state;
    assert_int_equal(ntrusted, 4);
    assert_true(in_list("10.1.2.3"));
    assert_true(in_list("10.255.255.255"));
    assert_false(in_list("11.0.0.1"));
    assert_true(in_list("192.168.1.7"));
    assert_false(in_list("192.168.1.8"));
    assert_true(in_list("::1"));
    assert_false(in_list("::2"));
    assert_true(in_list("fd12:3456::1"));
    assert_false(in_list("fe80::1"));
    /* An IPv4 prefix never matches an IPv6 address that is not IPv4-mapped. */
    assert_false(in_list("::a01:203"));
    assert_true(in_list("::ffff:10.1.2.3"));
}

static void test_parse_errors(void **state)
{
    (void)state;
    const char *bad[] = {"10.0.0.0/33", "::1/129", "10.0.0.1/", "10.0.0.1/x", "example.com",
                         "10.0.0.1:80", "[::1]", "1.2.3", "10.0.0.0/8,nope"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fs_http_cidr_t *v = NULL;
        size_t n = 0;
        char err[128] = "";
        assert_true(fs_http_cidrs_parse(bad[i], &v, &n, err, sizeof err) < 0);
        assert_non_null(strstr(err, "trusted_proxies"));
        assert_null(v);
    }
    fs_http_cidr_t *v = (fs_http_cidr_t *)1;
    size_t n = 9;
    char err[64];
    assert_int_equal(fs_http_cidrs_parse("", &v, &n, err, sizeof err), 0);
    assert_null(v);
    assert_int_equal(n, 0);
    assert_int_equal(fs_http_cidrs_parse(NULL, &v, &n, err, sizeof err), 0);
    assert_int_equal(fs_http_cidrs_parse("0.0.0.0/0", &v, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    uint8_t a[16];
    assert_int_equal(fs_http_addr_parse("203.0.113.9", 11, a), 0);
    assert_true(fs_http_cidrs_match(v, n, a));
    free(v);
}

static void test_addr_forms(void **state)
{
    (void)state;
    uint8_t a[16];
    char t[FS_HTTP_ADDR_MAX];
    const char *forms[][2] = {{"203.0.113.9", "203.0.113.9"},     {"203.0.113.9:4711", "203.0.113.9"},
                              {"[2001:db8::1]", "2001:db8::1"},   {"[2001:db8::1]:443", "2001:db8::1"},
                              {"2001:DB8:0::1", "2001:db8::1"},   {"::ffff:198.51.100.2", "198.51.100.2"}};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        assert_int_equal(fs_http_addr_parse(forms[i][0], strlen(forms[i][0]), a), 0);
        fs_http_addr_text(a, t);
        assert_string_equal(t, forms[i][1]);
    }
    const char *bad[] = {"", "unknown", "1.2.3.4.5", "[::1", "300.1.1.1", "_hidden"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_not_equal(fs_http_addr_parse(bad[i], strlen(bad[i]), a), 0);
}

static void test_xff(void **state)
{
    (void)state;
    /* The right-most entry that is not one of our proxies is the client. */
    assert_string_equal(xff("203.0.113.9"), "203.0.113.9");
    assert_string_equal(xff("203.0.113.9, 10.0.0.2"), "203.0.113.9");
    assert_string_equal(xff("198.51.100.1, 203.0.113.9, 10.0.0.2, 10.0.0.3"), "203.0.113.9");
    /* A client cannot pick its address by writing one in front: it is left of the real one. */
    assert_string_equal(xff("1.1.1.1, 203.0.113.9"), "203.0.113.9");
    assert_string_equal(xff(" 2001:db8::7 ,::1"), "2001:db8::7");
    assert_string_equal(xff("[2001:db8::7]:1234,10.9.9.9"), "2001:db8::7");
    /* Every entry is a trusted proxy: the left-most one. */
    assert_string_equal(xff("10.0.0.5, 10.0.0.2"), "=10.0.0.5");
    /* Garbage anywhere right of the answer, or no entry at all: not believed. */
    assert_string_equal(xff("203.0.113.9, unknown"), "-");
    assert_string_equal(xff("unknown, 10.0.0.2"), "-");
    assert_string_equal(xff(""), "-");
    assert_string_equal(xff(" , "), "-");
    /* Garbage left of the answer is never read. */
    assert_string_equal(xff("junk, 203.0.113.9"), "203.0.113.9");
    assert_string_equal(xff("203.0.113.9,,10.0.0.2"), "203.0.113.9");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_list),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_addr_forms),
        cmocka_unit_test(test_xff),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
