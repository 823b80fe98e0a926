/* Unit tests for src/common/shopper_token.c: signing, verification, every way a token is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "common/ids.h"
#include "common/shopper_token.h"

#define SECRET "correct-horse-battery-staple-42"
#define NOW 1790000000

static int verify(const char *tok, int64_t now, char *user)
{
    size_t ul = 0;
    int64_t exp = 0;
    return fs_shopper_token_verify(SECRET, strlen(SECRET), tok, strlen(tok), now, user, &ul, &exp);
}

/* The worked example of docs/abuse.md, computed independently (Python hmac/base64). */
static void test_worked_example(void **state)
{
    (void)state;
    char tok[FS_SHOPPER_TOKEN_MAX + 1], user[FS_ID_MAX + 1];
    int n = fs_shopper_token_sign(SECRET, strlen(SECRET), "alice", 5, 1798761600, tok);
    assert_int_equal(n, (int)strlen(tok));
    assert_string_equal(tok, "YWxpY2U.1798761600.KzOISfw0x49tzFM_ABQ9KdNxuE6ivp5r5Hbmtf_S1Yg");
    assert_int_equal(verify(tok, 1798761599, user), 0);
    assert_string_equal(user, "alice");
    assert_int_equal(verify(tok, 1798761600, user), FS_SHOPPER_EXPIRED);
}

static void test_round_trip(void **state)
{
    (void)state;
    const char *users[] = {"bob", "ü-ñ shopper 42", "x"};
    char tok[FS_SHOPPER_TOKEN_MAX + 1], user[FS_ID_MAX + 1], big[FS_ID_MAX + 1];
    memset(big, 'u', FS_ID_MAX);
    big[FS_ID_MAX] = 0;
    for (size_t i = 0; i < 4; i++) {
        const char *u = i < 3 ? users[i] : big;
        int n = fs_shopper_token_sign(SECRET, strlen(SECRET), u, strlen(u), NOW + 60, tok);
        assert_true(n > 0 && n <= FS_SHOPPER_TOKEN_MAX);
        size_t ul = 0;
        int64_t exp = 0;
        assert_int_equal(fs_shopper_token_verify(SECRET, strlen(SECRET), tok, (size_t)n, NOW, user, &ul, &exp), 0);
        assert_int_equal(ul, strlen(u));
        assert_memory_equal(user, u, ul);
        assert_int_equal(exp, NOW + 60);
    }
    /* Not a user id: refused when signing. */
    assert_int_equal(fs_shopper_token_sign(SECRET, strlen(SECRET), "", 0, NOW, tok), -2);
    assert_int_equal(fs_shopper_token_sign(SECRET, strlen(SECRET), "a\nb", 3, NOW, tok), -2);
}

static void test_forged(void **state)
{
    (void)state;
    char tok[FS_SHOPPER_TOKEN_MAX + 1], other[FS_SHOPPER_TOKEN_MAX + 1], user[FS_ID_MAX + 1];
    int n = fs_shopper_token_sign(SECRET, strlen(SECRET), "alice", 5, NOW + 60, tok);
    /* Another secret. */
    fs_shopper_token_sign("another-secret-of-32-bytes-xxxxx", 32, "alice", 5, NOW + 60, other);
    assert_int_equal(verify(other, NOW, user), FS_SHOPPER_FORGED);
    /* Another user or expiry with the old signature. */
    char *sig = strrchr(tok, '.');
    snprintf(other, sizeof other, "Ym9i.%d%s", NOW + 60, sig);
    assert_int_equal(verify(other, NOW, user), FS_SHOPPER_FORGED);
    snprintf(other, sizeof other, "YWxpY2U.%d%s", NOW + 999999, sig);
    assert_int_equal(verify(other, NOW, user), FS_SHOPPER_FORGED);
    /* One character of the signature changed (still valid base64url of 32 bytes). */
    memcpy(other, tok, (size_t)n + 1);
    other[n - 5] = other[n - 5] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(other, NOW, user), FS_SHOPPER_FORGED);
    /* Forged and expired reads as forged: expiry is not believed before the signature. */
    snprintf(other, sizeof other, "YWxpY2U.1%s", sig);
    assert_int_equal(verify(other, NOW, user), FS_SHOPPER_FORGED);
}

static void test_malformed(void **state)
{
    (void)state;
    char tok[FS_SHOPPER_TOKEN_MAX + 1], other[400], user[FS_ID_MAX + 1];
    fs_shopper_token_sign(SECRET, strlen(SECRET), "alice", 5, NOW + 60, tok);
    const char *sig = strrchr(tok, '.') + 1;
    const char *bad[] = {"", ".", "..", "abc", "YWxpY2U.1790000060", "YWxpY2U..x", ".1790000060.x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(verify(bad[i], NOW, user), FS_SHOPPER_MALFORMED);
    /* {before the signature, after it} */
    const char *parts[][2] = {{"YWxpY2U.-1.", ""},          {"YWxpY2U.+1790000060.", ""},
                              {"YWxpY2U.17900000 60.", ""}, {"YWxp=Y2U.1790000060.", ""},
                              {"YWxpY2U.99999999999999999999.", ""}, {"YWxpY2U.1790000060.", "."},
                              {"YWxpY2U.1790000060.", "A"}, {"YWxpY2U+.1790000060.", ""}};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        snprintf(other, sizeof other, "%s%s%s", parts[i][0], sig, parts[i][1]);
        assert_int_equal(verify(other, NOW, user), FS_SHOPPER_MALFORMED);
    }
    /* Signature of the wrong size. */
    snprintf(other, sizeof other, "YWxpY2U.1790000060.%.42s", sig);
    assert_int_equal(verify(other, NOW, user), FS_SHOPPER_MALFORMED);
    /* Over the maximum length. */
    memset(other, 'A', sizeof other - 1);
    other[sizeof other - 1] = 0;
    assert_int_equal(verify(other, NOW, user), FS_SHOPPER_MALFORMED);
    assert_non_null(strstr(fs_shopper_token_strerror(FS_SHOPPER_MALFORMED), "malformed"));
    assert_non_null(strstr(fs_shopper_token_strerror(FS_SHOPPER_FORGED), "signature"));
    assert_non_null(strstr(fs_shopper_token_strerror(FS_SHOPPER_EXPIRED), "expired"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worked_example),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_forged),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
