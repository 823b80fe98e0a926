/* Unit tests for src/common/config.c: INI file, environment overrides, validation, URLs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flashsale/config.h"
#include "flashsale/error.h"

static const char *const fs__env[] = {"FLASHSALE_LISTEN", "FLASHSALE_THREADS", "FLASHSALE_LOG_LEVEL",
                                      "FLASHSALE_IDLE_TIMEOUT_MS", "FLASHSALE_SHUTDOWN_TIMEOUT_MS",
                                      "FLASHSALE_SWEEP_INTERVAL_MS", "FLASHSALE_REDIS",
                                      "FLASHSALE_REDIS_TIMEOUT_MS", "FLASHSALE_API_KEYS",
                                      "FLASHSALE_ADMIN_TOKEN"};

static int clear_env(void **state)
{
    for (size_t i = 0; i < sizeof fs__env / sizeof fs__env[0]; i++) unsetenv(fs__env[i]);
    return 0;
}

static char *write_file(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/fs-config-test-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_defaults(void **state)
{
    fs_config_t c;
    char err[256];
    fs_config_defaults(&c);
    assert_int_equal(fs_config_load(&c, NULL, err, sizeof err), FS_OK);
    assert_string_equal(c.listen, "127.0.0.1:8080");
    assert_string_equal(c.redis_url, "redis://127.0.0.1:6379/0");
    assert_true(c.threads >= 1 && c.threads == (sysconf(_SC_NPROCESSORS_ONLN) > 64 ? 64 : sysconf(_SC_NPROCESSORS_ONLN)));
    /* No credentials: refuses to run, naming what is missing. */
    assert_int_equal(fs_config_validate(&c, err, sizeof err), FS_EINVAL);
    assert_non_null(strstr(err, "admin token"));
    fs_config_free(&c);
}

static void test_file_and_env(void **state)
{
    char *path = write_file("; comment\n[server]\nlisten = 127.0.0.1:9000\nthreads = 3\n"
                            "[redis]\nurl = redis://127.0.0.1:6390/2\n"
                            "[auth]\napi_keys = a,b\nadmin_token = file-token\n");
    setenv("FLASHSALE_THREADS", "2", 1);
    setenv("FLASHSALE_ADMIN_TOKEN", "env-token", 1);
    fs_config_t c;
    char err[256];
    fs_config_defaults(&c);
    assert_int_equal(fs_config_load(&c, path, err, sizeof err), FS_OK);
    assert_string_equal(c.listen, "127.0.0.1:9000");
    assert_int_equal(c.threads, 2); /* the environment wins */
    assert_string_equal(c.admin_token, "env-token");
    assert_string_equal(c.api_keys, "a,b");
    assert_int_equal(fs_config_validate(&c, err, sizeof err), FS_OK);
    fs_config_free(&c);
    unlink(path);
}

static void test_errors_name_the_line(void **state)
{
    const char *cases[][2] = {{"[server]\nlisten = 127.0.0.1:1\nthreads = many\n", "line 3"},
                              {"[server]\nbogus = 1\n", "line 2"},
                              {"[server]\nthis is not ini\n", "line 2"},
                              {"[auth]\nadmin_token = x\n[server\n", "line 3"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = write_file(cases[i][0]);
        fs_config_t c;
        char err[256];
        fs_config_defaults(&c);
        assert_int_equal(fs_config_load(&c, path, err, sizeof err), FS_EINVAL);
        assert_non_null(strstr(err, cases[i][1]));
        fs_config_free(&c);
        unlink(path);
    }
    fs_config_t c;
    char err[256];
    fs_config_defaults(&c);
    assert_int_equal(fs_config_load(&c, "/nonexistent/flashsale.ini", err, sizeof err), FS_EINVAL);
    assert_non_null(strstr(err, "cannot open"));
    setenv("FLASHSALE_LOG_LEVEL", "loud", 1);
    assert_int_equal(fs_config_load(&c, NULL, err, sizeof err), FS_EINVAL);
    assert_non_null(strstr(err, "FLASHSALE_LOG_LEVEL"));
    fs_config_free(&c);
}

static void test_secrets_not_echoed(void **state)
{
    char *path = write_file("[auth]\nadmin_token = s3cr3t-value\n[server]\nthreads = s3cr3t-value\n");
    fs_config_t c;
    char err[256];
    fs_config_defaults(&c);
    assert_int_equal(fs_config_load(&c, path, err, sizeof err), FS_EINVAL);
    assert_null(strstr(err, "s3cr3t"));
    fs_config_free(&c);
    unlink(path);
}

static void test_parse_addresses(void **state)
{
    char host[64];
    int port;
    assert_int_equal(fs_parse_hostport("127.0.0.1:8080", host, sizeof host, &port), FS_OK);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_int_equal(fs_parse_hostport("[::1]:81", host, sizeof host, &port), FS_OK);
    assert_string_equal(host, "::1");
    assert_int_equal(fs_parse_hostport("127.0.0.1", host, sizeof host, &port), FS_EINVAL);
    assert_int_equal(fs_parse_hostport("127.0.0.1:0", host, sizeof host, &port), FS_EINVAL);
    assert_int_equal(fs_parse_hostport("127.0.0.1:65536", host, sizeof host, &port), FS_EINVAL);
    assert_int_equal(fs_parse_hostport(":80", host, sizeof host, &port), FS_EINVAL);
}

static void test_redis_url(void **state)
{
    (void)state;
    fs_redis_url_t u;
    assert_int_equal(fs_redis_url_parse("redis://127.0.0.1:6379/3", &u), FS_OK);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 3);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "");
    assert_int_equal(fs_redis_url_parse("redis://127.0.0.1:6379", &u), FS_OK);
    assert_int_equal(u.db, 0);
    assert_int_equal(u.tls, 0);
    assert_int_equal(fs_redis_url_parse("rediss://:pw@redis.example.com:6380/1", &u), FS_OK);
    assert_int_equal(u.tls, 1);
    assert_string_equal(u.host, "redis.example.com");
    assert_string_equal(u.password, "pw");
    assert_int_equal(fs_redis_url_parse("redisss://127.0.0.1:6379", &u), FS_EINVAL);
    assert_int_equal(fs_redis_url_parse("http://127.0.0.1:6379", &u), FS_EINVAL);
    assert_int_equal(fs_redis_url_parse("redis://127.0.0.1:6379/x", &u), FS_EINVAL);
    /* a password for the default user, and a user with one */
    assert_int_equal(fs_redis_url_parse("redis://:s3cret@10.0.0.5:6380/2", &u), FS_OK);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "s3cret");
    assert_string_equal(u.host, "10.0.0.5");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 2);
    assert_int_equal(fs_redis_url_parse("redis://flashsale:pw:with:colons@[::1]:6379", &u), FS_OK);
    assert_string_equal(u.user, "flashsale");
    assert_string_equal(u.password, "pw:with:colons");
    assert_string_equal(u.host, "::1");
    /* percent-decoding: '@', '/', '%' and a space in the password; an '@' left raw is the last
     * one's business (the host comes after the last '@') */
    assert_int_equal(fs_redis_url_parse("redis://u%3Ax:a%40b%2Fc%25d%20e@h:1/0", &u), FS_OK);
    assert_string_equal(u.user, "u:x");
    assert_string_equal(u.password, "a@b/c%d e");
    assert_int_equal(fs_redis_url_parse("redis://:a@b@h:1", &u), FS_OK);
    assert_string_equal(u.password, "a@b");
    assert_string_equal(u.host, "h");
    /* no password, a bad escape, a control character, no host */
    assert_int_equal(fs_redis_url_parse("redis://user@h:1", &u), FS_EINVAL);
    assert_int_equal(fs_redis_url_parse("redis://u:@h:1", &u), FS_EINVAL);
    assert_int_equal(fs_redis_url_parse("redis://:a%4@h:1", &u), FS_EINVAL);
    assert_int_equal(fs_redis_url_parse("redis://:a%zz@h:1", &u), FS_EINVAL);
    assert_int_equal(fs_redis_url_parse("redis://:a%0Ab@h:1", &u), FS_EINVAL);
    assert_int_equal(fs_redis_url_parse("redis://:pw@", &u), FS_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clear_env),
        cmocka_unit_test_setup(test_file_and_env, clear_env),
        cmocka_unit_test_setup(test_errors_name_the_line, clear_env),
        cmocka_unit_test_setup(test_secrets_not_echoed, clear_env),
        cmocka_unit_test_setup(test_parse_addresses, clear_env),
        cmocka_unit_test_setup(test_redis_url, clear_env)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
