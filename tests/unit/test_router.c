/* Unit tests for src/http/router.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <llhttp.h>
#include <string.h>

#include "http/router.h"

static const fs_route_t routes[] = {
    {HTTP_GET, "/healthz"},
    {HTTP_PUT, "/admin/v1/launches/{launch}"},
    {HTTP_GET, "/admin/v1/launches/{launch}"},
    {HTTP_POST, "/admin/v1/launches/{launch}/skus/{sku}/restock"},
    {HTTP_POST, "/v1/reservations/{id}/confirm"},
};

static int match(int method, const char *path, fs_str_t *params, char *allow)
{
    fs_str_t p = {path, strlen(path)};
    return fs_router_match(routes, sizeof routes / sizeof routes[0], method, p, params, allow, 64);
}

static void test_match(void **state)
{
    fs_str_t params[FS_HTTP_MAX_PARAMS];
    char allow[64];
    assert_int_equal(match(HTTP_GET, "/healthz", params, allow), 0);
    assert_int_equal(match(HTTP_GET, "/admin/v1/launches/l1", params, allow), 2);
    assert_int_equal(match(HTTP_PUT, "/admin/v1/launches/l1", params, allow), 1);
    assert_int_equal(params[0].n, 2);
    assert_memory_equal(params[0].p, "l1", 2);
    assert_int_equal(match(HTTP_POST, "/admin/v1/launches/L/skus/S-1/restock", params, allow), 3);
    assert_memory_equal(params[0].p, "L", 1);
    assert_int_equal(params[1].n, 3);
    assert_memory_equal(params[1].p, "S-1", 3);
}

static void test_no_match(void **state)
{
    fs_str_t params[FS_HTTP_MAX_PARAMS];
    char allow[64];
    assert_int_equal(match(HTTP_GET, "/healthz/", params, allow), FS_ROUTE_NOT_FOUND);
    assert_int_equal(match(HTTP_GET, "/admin/v1/launches/", params, allow), FS_ROUTE_NOT_FOUND);
    assert_int_equal(match(HTTP_GET, "/admin/v1/launches/a/b", params, allow), FS_ROUTE_NOT_FOUND);
    assert_int_equal(match(HTTP_GET, "/v1/reservations//confirm", params, allow), FS_ROUTE_NOT_FOUND);
    assert_int_equal(match(HTTP_DELETE, "/admin/v1/launches/l1", params, allow), FS_ROUTE_BAD_METHOD);
    assert_string_equal(allow, "PUT, GET");
    assert_int_equal(match(HTTP_GET, "/v1/reservations/x/confirm", params, allow), FS_ROUTE_BAD_METHOD);
    assert_string_equal(allow, "POST");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_match), cmocka_unit_test(test_no_match)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
