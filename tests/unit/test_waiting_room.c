/* Unit tests for the waiting room's tickets (src/api/waiting_room.c): sign, verify, and every way
 * a ticket can be refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <string.h>

#include "api/waiting_room.h"
#include "common/ids.h"

static fs_wr_ticket_t ticket(void)
{
    fs_wr_ticket_t t = {.launch = "phone-x", .user = "zo\xc3\xab|a", .position = 42,
                        .turn_ms = 1795743301025LL, .exp_ms = 1795743601025LL};
    t.user_len = strlen(t.user);
    return t;
}

static void test_roundtrip(void **state)
{
    uint8_t key[FS_WR_KEY_LEN];
    fs_wr_key("a shared secret of the servers", 30, key);
    fs_wr_ticket_t t = ticket(), got;
    char tok[FS_WR_TICKET_MAX + 1], again[FS_WR_TICKET_MAX + 1];
    int n = fs_wr_ticket_sign(key, &t, tok);
    assert_true(n > 0 && (size_t)n == strlen(tok));
    assert_int_equal(fs_wr_ticket_sign(key, &t, again), n);
    assert_string_equal(tok, again); /* deterministic */
    memset(&got, 0, sizeof got);
    assert_int_equal(fs_wr_ticket_verify(key, tok, (size_t)n, t.turn_ms, &got), 0);
    assert_string_equal(got.launch, "phone-x");
    assert_int_equal(got.user_len, t.user_len);
    assert_memory_equal(got.user, t.user, t.user_len);
    assert_int_equal(got.position, 42);
    assert_int_equal(got.turn_ms, t.turn_ms);
    assert_int_equal(got.exp_ms, t.exp_ms);
}

static void test_refusals(void **state)
{
    uint8_t key[FS_WR_KEY_LEN], other[FS_WR_KEY_LEN];
    fs_wr_key("a shared secret of the servers", 30, key);
    fs_wr_key("another secret entirely", 23, other);
    fs_wr_ticket_t t = ticket(), got;
    char tok[FS_WR_TICKET_MAX + 1];
    int n = fs_wr_ticket_sign(key, &t, tok);
    /* expired: valid while now < exp_ms */
    assert_int_equal(fs_wr_ticket_verify(key, tok, (size_t)n, t.exp_ms, &got), FS_WR_EXPIRED);
    /* another key */
    assert_int_equal(fs_wr_ticket_verify(other, tok, (size_t)n, t.turn_ms, &got), FS_WR_FORGED);
    /* one character of the payload changed */
    char bad[FS_WR_TICKET_MAX + 1];
    memcpy(bad, tok, (size_t)n + 1);
    bad[3] = bad[3] == 'A' ? 'B' : 'A';
    int rc = fs_wr_ticket_verify(key, bad, (size_t)n, t.turn_ms, &got);
    assert_true(rc == FS_WR_FORGED || rc == FS_WR_MALFORMED);
    /* truncated, empty, no dot, garbage */
    assert_int_equal(fs_wr_ticket_verify(key, tok, (size_t)n - 1, t.turn_ms, &got), FS_WR_MALFORMED);
    assert_int_equal(fs_wr_ticket_verify(key, "", 0, t.turn_ms, &got), FS_WR_MALFORMED);
    assert_int_equal(fs_wr_ticket_verify(key, "abc", 3, t.turn_ms, &got), FS_WR_MALFORMED);
    assert_int_equal(fs_wr_ticket_verify(key, "a b.c", 5, t.turn_ms, &got), FS_WR_MALFORMED);
    /* what cannot be signed */
    fs_wr_ticket_t neg = ticket();
    neg.position = -1;
    assert_true(fs_wr_ticket_sign(key, &neg, tok) < 0);
    fs_wr_ticket_t badid = ticket();
    strcpy(badid.launch, "a:b");
    assert_true(fs_wr_ticket_sign(key, &badid, tok) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_roundtrip),
                                       cmocka_unit_test(test_refusals)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
