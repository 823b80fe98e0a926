/* Unit tests for src/common/ids.c: id validation, base64url, reservation ids, secret sets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/ids.h"
#include "flashsale/error.h"

static void test_id_valid(void **state)
{
    char long_id[130];
    memset(long_id, 'a', sizeof long_id);
    assert_true(fs_id_valid("phone-15_black.256GB~v2", 23));
    assert_true(fs_id_valid(long_id, 128));
    assert_false(fs_id_valid(long_id, 129));
    assert_false(fs_id_valid("", 0));
    assert_false(fs_id_valid("a:b", 3));
    assert_false(fs_id_valid("a{b}", 4));
    assert_false(fs_id_valid("a b", 3));
    assert_false(fs_id_valid("a\nb", 3));
    assert_false(fs_id_valid("caf\xc3\xa9", 5));
}

static void test_user_valid(void **state)
{
    assert_true(fs_user_valid("user@example.com", 16));
    assert_true(fs_user_valid("\xe5\xbc\xa0\xe4\xb8\x89", 6)); /* 张三 */
    assert_true(fs_user_valid("a b", 3));
    assert_false(fs_user_valid("", 0));
    assert_false(fs_user_valid("a\tb", 3));
    assert_false(fs_user_valid("a\x7f", 2));
    assert_false(fs_user_valid("\xc2\x85", 2));      /* C1 control NEL */
    assert_false(fs_user_valid("\xe5\xbc", 2));      /* truncated sequence */
    assert_false(fs_user_valid("\xff", 1));
    /* ASCII runs around other characters (the ASCII fast path hands over mid-string) */
    assert_true(fs_user_valid("ab\xe5\xbc\xa0" "cd", 7));
    assert_false(fs_user_valid("abc\x01", 4));
    assert_false(fs_user_valid("abc\x7f" "d", 5));
    assert_false(fs_user_valid("ab\xc2", 3));
    assert_false(fs_user_valid("ab\xc2\x85" "cd", 6));
    assert_false(fs_user_valid("\xc0\xaf", 2));      /* overlong */
}

static void test_b64url(void **state)
{
    const char *vec[][2] = {{"", ""}, {"f", "Zg"}, {"fo", "Zm8"}, {"foo", "Zm9v"},
                            {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
                            {"\xfb\xff", "-_8"}};
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
        char out[32];
        uint8_t back[32];
        size_t n = fs_b64url_encode((const uint8_t *)vec[i][0], strlen(vec[i][0]), out);
        assert_string_equal(out, vec[i][1]);
        int m = fs_b64url_decode(out, n, back, sizeof back);
        assert_int_equal(m, (int)strlen(vec[i][0]));
        assert_memory_equal(back, vec[i][0], (size_t)m);
    }
    uint8_t buf[8];
    assert_int_equal(fs_b64url_decode("Zm9v+g", 6, buf, sizeof buf), FS_EINVAL); /* not url-safe */
    assert_int_equal(fs_b64url_decode("Z", 1, buf, sizeof buf), FS_EINVAL);
    assert_int_equal(fs_b64url_decode("Zh", 2, buf, sizeof buf), FS_EINVAL); /* trailing bits */
    assert_int_equal(fs_b64url_decode("Zm9vYmFyYmF6", 12, buf, 8), FS_EINVAL); /* over cap */
}

static void test_rid(void **state)
{
    char rid[FS_RID_MAX + 1], rid2[FS_RID_MAX + 1], l[FS_ID_MAX + 1], s[FS_ID_MAX + 1];
    size_t n = fs_rid_new("launch-1", 8, "sku.black", 9, rid);
    size_t n2 = fs_rid_new("launch-1", 8, "sku.black", 9, rid2);
    assert_true(n == strlen(rid) && n2 == n);
    assert_string_not_equal(rid, rid2); /* 128 random bits each */
    assert_int_equal(fs_rid_parse(rid, n, l, s), FS_OK);
    assert_string_equal(l, "launch-1");
    assert_string_equal(s, "sku.black");
    /* Longest ids still fit FS_RID_MAX. */
    char big[FS_ID_MAX];
    memset(big, 'z', sizeof big);
    n = fs_rid_new(big, sizeof big, big, sizeof big, rid);
    assert_true(n <= FS_RID_MAX);
    assert_int_equal(fs_rid_parse(rid, n, l, s), FS_OK);
    assert_int_equal(strlen(l), FS_ID_MAX);
    /* Forged, truncated and garbage ids are rejected. */
    n = fs_rid_new("l", 1, "s", 1, rid);
    assert_int_equal(fs_rid_parse(rid, n - 1, l, s), FS_EINVAL);
    assert_int_equal(fs_rid_parse("nonsense", 8, l, s), FS_EINVAL);
    assert_int_equal(fs_rid_parse("", 0, l, s), FS_EINVAL);
    uint8_t raw[64] = {1, 3, 'a', ':', 'b', 1, 's'};
    char forged[128];
    size_t fn = fs_b64url_encode(raw, 7 + 16, forged);
    assert_int_equal(fs_rid_parse(forged, fn, l, s), FS_EINVAL); /* ':' is not an id character */
}

/* Grouped ids: "<group>.<i>", the group a version-2 id, i = 1..FS_GROUP_MAX without leading
 * zeros. */
static void test_grouped_rid(void **state)
{
    char g[FS_RID_MAX + 1], rid[FS_RID_MAX + 8], l[FS_ID_MAX + 1], s[FS_ID_MAX + 1];
    size_t n = fs_group_new("launch-1", 8, "sku.black", 9, g);
    assert_true(n == strlen(g));
    assert_int_equal(fs_rid_parse(g, n, l, s), FS_EINVAL); /* a group alone is no reservation */
    static const struct {
        const char *tail;
        int ok;
    } cases[] = {{".1", 1}, {".27", 1}, {".1000", 1}, {".0", 0}, {".01", 0}, {".1001", 0},
                 {".10000", 0}, {".", 0}, {".1a", 0}, {".-1", 0}, {"..1", 0}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t m = (size_t)snprintf(rid, sizeof rid, "%s%s", g, cases[k].tail);
        l[0] = s[0] = 0;
        assert_int_equal(fs_rid_parse(rid, m, l, s), cases[k].ok ? FS_OK : FS_EINVAL);
        if (cases[k].ok) {
            assert_string_equal(l, "launch-1");
            assert_string_equal(s, "sku.black");
        }
    }
    /* The longest grouped id fits FS_RID_MAX. */
    char big[FS_ID_MAX];
    memset(big, 'z', sizeof big);
    n = fs_group_new(big, sizeof big, big, sizeof big, g);
    size_t m = (size_t)snprintf(rid, sizeof rid, "%s.1000", g);
    assert_true(m <= FS_RID_MAX);
    assert_int_equal(fs_rid_parse(rid, m, l, s), FS_OK);
    /* A single id with an index, and a group id without one, are not reservations. */
    n = fs_rid_new("l", 1, "s", 1, g);
    m = (size_t)snprintf(rid, sizeof rid, "%s.1", g);
    assert_int_equal(fs_rid_parse(rid, m, l, s), FS_EINVAL);
}

static void test_order_id(void **state)
{
    char a[32], b[32];
    assert_int_equal(fs_order_id_new(a), 24);
    fs_order_id_new(b);
    assert_true(a[0] == 'o' && a[1] == '_');
    assert_string_not_equal(a, b);
}

static void test_secret_set(void **state)
{
    fs_secret_set_t set = {0};
    fs_secret_set_add_csv(&set, " key-one , key-two,,");
    assert_int_equal(set.count, 2);
    assert_int_equal(fs_secret_set_match(&set, "key-one", 7), 0);
    assert_int_equal(fs_secret_set_match(&set, "key-two", 7), 1);
    assert_int_equal(fs_secret_set_match(&set, "key-on", 6), -1);
    assert_int_equal(fs_secret_set_match(&set, "key-one ", 8), -1);
    assert_int_equal(fs_secret_set_match(&set, "", 0), -1);
    fs_secret_set_free(&set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_valid), cmocka_unit_test(test_user_valid),
        cmocka_unit_test(test_b64url),   cmocka_unit_test(test_rid),
        cmocka_unit_test(test_grouped_rid),
        cmocka_unit_test(test_order_id), cmocka_unit_test(test_secret_set)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
