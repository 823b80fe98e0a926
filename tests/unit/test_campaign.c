/* Unit tests of loadtest/campaign.c: good files (every key, defaults, the shipped examples) and
 * bad files, whose messages must name the line and the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "campaign.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#ifndef FS_CAMPAIGNS_DIR
#define FS_CAMPAIGNS_DIR "loadtest/campaigns"
#endif

static const char *const fs__good =
    "; a comment\n"
    "[campaign]\n"
    "name = Phone X rehearsal\n"
    "duration = 30s\n"
    "drain = 5s\n"
    "connections = 48\n"
    "seed = 99\n"
    "\n"
    "[launch]\n"
    "id = phone-x\n"
    "name = Phone X\n"
    "hold_seconds = 45\n"
    "unique_id = false\n"
    "open_after = 500ms\n"
    "close_at_end = yes\n"
    "\n"
    "[sku black]\n"
    "stock = 3000\n"
    "per_user_limit = 2\n"
    "price_cents = 79900\n"
    "weight = 3\n"
    "[sku white]\n"
    "stock = 2000\n"
    "\n"
    "[shoppers]\n"
    "count = 50000\n"
    "id_prefix = s-\n"
    "qty = 1-3\n"
    "pick = sequential\n"
    "\n"
    "[behaviour]\n"
    "confirm = 60%\n"
    "cancel = 0.1\n"
    "think_min = 100ms\n"
    "think_max = 3s\n"
    "max_retries = 7\n"
    "backoff = 25ms\n"
    "backoff_max = 1s\n"
    "retry_not_open = false\n"
    "idempotency = no\n"
    "\n"
    "[profile]\n"
    "phase = spike 20k 2s      ; the doors open\n"
    "phase = ramp 20k 2000 3s\n"
    "phase = plateau 2000 20s\n"
    "phase = pause 1s\n";

static void test_good_file_every_key(void **state)
{
    (void)state;
    fs_campaign_t c;
    char err[512] = "";
    int rc = fs_campaign_parse(&c, fs__good, "good.ini", err, sizeof err);
    if (rc) fail_msg("%s", err);
    assert_string_equal(c.name, "Phone X rehearsal");
    assert_true(fabs(c.duration_s - 30) < 1e-9);
    assert_true(fabs(c.drain_s - 5) < 1e-9);
    assert_int_equal(c.connections, 48);
    assert_int_equal(c.seed, 99);
    assert_string_equal(c.launch_id, "phone-x");
    assert_string_equal(c.launch_name, "Phone X");
    assert_int_equal(c.hold_seconds, 45);
    assert_int_equal(c.unique_id, 0);
    assert_true(fabs(c.open_after_s - 0.5) < 1e-9);
    assert_int_equal(c.close_at_end, 1);
    assert_int_equal(c.nskus, 2);
    assert_string_equal(c.skus[0].id, "black");
    assert_int_equal(c.skus[0].stock, 3000);
    assert_int_equal(c.skus[0].per_user_limit, 2);
    assert_int_equal(c.skus[0].price_cents, 79900);
    assert_true(fabs(c.skus[0].weight - 3) < 1e-9);
    assert_string_equal(c.skus[1].id, "white");
    assert_int_equal(c.skus[1].stock, 2000);
    assert_int_equal(c.skus[1].per_user_limit, 2); /* default */
    assert_true(fabs(c.skus[1].weight - 1) < 1e-9);
    assert_int_equal(c.shoppers, 50000);
    assert_string_equal(c.shopper_prefix, "s-");
    assert_int_equal(c.qty_min, 1);
    assert_int_equal(c.qty_max, 3);
    assert_int_equal(c.pick, FS_PICK_SEQUENTIAL);
    assert_true(fabs(c.p_confirm - 0.6) < 1e-9);
    assert_true(fabs(c.p_cancel - 0.1) < 1e-9);
    assert_true(fabs(c.think_min_s - 0.1) < 1e-9);
    assert_true(fabs(c.think_max_s - 3) < 1e-9);
    assert_int_equal(c.max_retries, 7);
    assert_true(fabs(c.backoff_s - 0.025) < 1e-9);
    assert_true(fabs(c.backoff_max_s - 1) < 1e-9);
    assert_int_equal(c.retry_not_open, 0);
    assert_int_equal(c.idempotency, 0);
    assert_int_equal(c.profile.n, 4);
    assert_int_equal(c.profile.phases[0].kind, FS_PHASE_SPIKE);
    assert_true(fabs(c.profile.phases[0].from - 20000) < 1e-9);
    assert_int_equal(c.profile.phases[1].kind, FS_PHASE_RAMP);
    assert_true(fabs(c.profile.phases[1].to - 2000) < 1e-9);
    assert_int_equal(c.profile.phases[3].kind, FS_PHASE_PAUSE);
    assert_true(fabs(c.profile.total_s - 26) < 1e-9);
    fs_campaign_free(&c);
}

static void test_defaults(void **state)
{
    (void)state;
    fs_campaign_t c;
    char err[512] = "";
    const char *text = "[launch]\nid = x\n[sku a]\nstock = 5\n[shoppers]\ncount = 10\n"
                       "[profile]\nphase = plateau 10 3s\n";
    int rc = fs_campaign_parse(&c, text, "min.ini", err, sizeof err);
    if (rc) fail_msg("%s", err);
    assert_true(fabs(c.duration_s - 3) < 1e-9); /* the profile's length */
    assert_true(c.drain_s > 0);
    assert_int_equal(c.unique_id, 1);
    assert_int_equal(c.qty_min, 1);
    assert_int_equal(c.qty_max, 1);
    assert_int_equal(c.pick, FS_PICK_RANDOM);
    assert_true(c.p_confirm + c.p_cancel <= 1);
    assert_true(c.connections > 0);
    fs_campaign_free(&c);
}

/* A bad file: parsing fails and the message contains every one of `wants`. */
static void fs__bad(const char *text, const char *want1, const char *want2, const char *want3)
{
    fs_campaign_t c;
    char err[512] = "";
    int rc = fs_campaign_parse(&c, text, "bad.ini", err, sizeof err);
    if (rc == 0) {
        fs_campaign_free(&c);
        fail_msg("accepted a bad file:\n%s", text);
    }
    const char *wants[] = {want1, want2, want3};
    for (int i = 0; i < 3; i++)
        if (wants[i] && !strstr(err, wants[i])) fail_msg("message \"%s\" lacks \"%s\"", err, wants[i]);
}

#define BASE_LAUNCH "[launch]\nid = x\n"
#define BASE_SKU "[sku a]\nstock = 5\n"
#define BASE_SHOP "[shoppers]\ncount = 10\n"
#define BASE_PROF "[profile]\nphase = plateau 10 3s\n"

static void test_bad_values_name_line_and_field(void **state)
{
    (void)state;
    /* line 4 */
    fs__bad(BASE_LAUNCH "[sku a]\nstock = lots\n" BASE_SHOP BASE_PROF, "bad.ini:4:", "[sku a] stock", "integer");
    fs__bad(BASE_LAUNCH BASE_SKU BASE_SHOP "[profile]\nphase = plateau 10 3s\nphase = surge 5 1s\n",
            "bad.ini:9:", "[profile] phase", "unknown phase");
    fs__bad(BASE_LAUNCH BASE_SKU BASE_SHOP BASE_PROF "[behaviour]\nconfirm = 1.5\n", "bad.ini:10:",
            "[behaviour] confirm", "probability");
    fs__bad("[campaign]\nduration = soon\n" BASE_LAUNCH BASE_SKU BASE_SHOP BASE_PROF, "bad.ini:2:",
            "[campaign] duration", NULL);
    fs__bad("[launch]\nid = has space\n" BASE_SKU BASE_SHOP BASE_PROF, "bad.ini:2:", "[launch] id", NULL);
    fs__bad(BASE_LAUNCH "[sku bad/id]\nstock = 5\n" BASE_SHOP BASE_PROF, "bad.ini:4:", "[sku bad/id]", NULL);
    fs__bad(BASE_LAUNCH BASE_SKU "[shoppers]\ncount = 10\nqty = 3-1\n" BASE_PROF, "bad.ini:7:",
            "[shoppers] qty", NULL);
    fs__bad(BASE_LAUNCH BASE_SKU "[shoppers]\ncount = 10\npick = roundrobin\n" BASE_PROF, "bad.ini:7:",
            "[shoppers] pick", NULL);
    fs__bad(BASE_LAUNCH BASE_SKU BASE_SHOP BASE_PROF "[behaviour]\nretry_not_open = maybe\n",
            "bad.ini:10:", "retry_not_open", "true or false");
    fs__bad("[campaign]\nconnections = 0\n" BASE_LAUNCH BASE_SKU BASE_SHOP BASE_PROF, "bad.ini:2:",
            "[campaign] connections", NULL);
}

static void test_bad_structure(void **state)
{
    (void)state;
    fs__bad(BASE_LAUNCH BASE_SKU BASE_SHOP BASE_PROF "[extras]\nfoo = 1\n", "bad.ini:10:", "unknown section [extras]", NULL);
    fs__bad(BASE_LAUNCH "colour = red\n" BASE_SKU BASE_SHOP BASE_PROF, "bad.ini:3:", "[launch] colour", "unknown key");
    fs__bad(BASE_LAUNCH BASE_SKU BASE_SHOP BASE_PROF "this is not ini\n", "bad.ini:9:", "malformed", NULL);
    fs__bad("stock = 5\n" BASE_LAUNCH BASE_SKU BASE_SHOP BASE_PROF, "bad.ini:1:", "[section]", NULL);
    /* only the first error is reported, with its own line */
    fs__bad(BASE_LAUNCH "[sku a]\nstock = x\nstock = y\n" BASE_SHOP BASE_PROF, "bad.ini:4:", NULL, NULL);
}

static void test_bad_combinations(void **state)
{
    (void)state;
    fs__bad(BASE_SKU BASE_SHOP BASE_PROF, "[launch] id", "missing", NULL);
    fs__bad(BASE_LAUNCH BASE_SHOP BASE_PROF, "[sku ID]", "no SKU", NULL);
    fs__bad(BASE_LAUNCH "[sku a]\nprice_cents = 5\n" BASE_SHOP BASE_PROF, "bad.ini:3:", "[sku a] stock", "missing");
    fs__bad(BASE_LAUNCH BASE_SKU BASE_PROF, "[shoppers] count", "missing", NULL);
    fs__bad(BASE_LAUNCH BASE_SKU BASE_SHOP, "[profile] phase", "missing", NULL);
    fs__bad(BASE_LAUNCH BASE_SKU BASE_SHOP BASE_PROF "[behaviour]\nconfirm = 0.8\ncancel = 0.3\n",
            "bad.ini:10:", "confirm + cancel", NULL);
    fs__bad(BASE_LAUNCH BASE_SKU BASE_SHOP BASE_PROF "[behaviour]\nthink_min = 2s\nthink_max = 1s\n",
            "[behaviour] think_min", "think_max", NULL);
    fs__bad(BASE_LAUNCH "[sku a]\nstock = 5\nweight = 0\n" BASE_SHOP BASE_PROF, "weight", NULL, NULL);
}

static void test_missing_file(void **state)
{
    (void)state;
    fs_campaign_t c;
    char err[512] = "";
    assert_int_not_equal(fs_campaign_load(&c, "/nonexistent/campaign.ini", err, sizeof err), 0);
    assert_non_null(strstr(err, "/nonexistent/campaign.ini"));
}

static void test_shipped_examples_parse(void **state)
{
    (void)state;
    static const char *const files[] = {"smoke.ini", "phone-launch.ini"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", FS_CAMPAIGNS_DIR, files[i]);
        fs_campaign_t c;
        char err[512] = "";
        if (fs_campaign_load(&c, path, err, sizeof err)) fail_msg("%s", err);
        assert_true(c.nskus >= 1);
        assert_true(c.profile.n >= 1);
        fs_campaign_free(&c);
    }
    /* the launch rehearsal: three colours, a few thousand units each, 10x more shoppers, a spike */
    char path[1024];
    snprintf(path, sizeof path, "%s/phone-launch.ini", FS_CAMPAIGNS_DIR);
    fs_campaign_t c;
    char err[512] = "";
    assert_int_equal(fs_campaign_load(&c, path, err, sizeof err), 0);
    assert_int_equal(c.nskus, 3);
    long long units = 0;
    for (size_t i = 0; i < c.nskus; i++) {
        assert_true(c.skus[i].stock >= 1000);
        units += c.skus[i].stock;
    }
    assert_true(c.shoppers >= 10 * units);
    assert_int_equal(c.profile.phases[0].kind, FS_PHASE_SPIKE);
    fs_campaign_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file_every_key),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_bad_values_name_line_and_field),
        cmocka_unit_test(test_bad_structure),
        cmocka_unit_test(test_bad_combinations),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_shipped_examples_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
