/* Unit tests of loadtest/rate.c: the open-loop schedule (counts, spacing, ramps, pauses,
 * scaling) and the phase parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "rate.h"

#include <math.h>
#include <string.h>

#define NEAR(a, b, eps) assert_true(fabs((double)(a) - (double)(b)) <= (eps))

static void test_constant_rate_evenly_spaced(void **state)
{
    (void)state;
    fs_rate_profile_t p;
    fs_rate_profile_init(&p);
    assert_int_equal(fs_rate_profile_constant(&p, 1000, 10), 0);
    assert_int_equal(fs_rate_arrivals(&p), 10000);
    for (uint64_t k = 0; k < 10000; k += 997) NEAR(fs_rate_arrival(&p, k), ((double)k + 0.5) / 1000.0, 1e-9);
    assert_true(fs_rate_arrival(&p, 10000) < 0);
    NEAR(fs_rate_count(&p, 2.5), 2500, 1e-9);
    NEAR(fs_rate_at(&p, 3), 1000, 1e-9);
    NEAR(fs_rate_at(&p, 10.5), 0, 0);
    fs_rate_profile_free(&p);
}

static void test_ramp_counts_and_monotonic(void **state)
{
    (void)state;
    /* "0 to 50k/s in 5 s, hold 30 s" */
    fs_rate_profile_t p;
    fs_rate_profile_init(&p);
    assert_int_equal(fs_rate_profile_add(&p, FS_PHASE_RAMP, 0, 50000, 5), 0);
    assert_int_equal(fs_rate_profile_add(&p, FS_PHASE_PLATEAU, 50000, 50000, 30), 0);
    NEAR(p.total_s, 35, 1e-12);
    NEAR(fs_rate_count(&p, 5), 125000, 1e-6);          /* triangle: 50000 * 5 / 2 */
    NEAR(fs_rate_count(&p, 2.5), 31250, 1e-6);         /* quarter of the triangle */
    NEAR(fs_rate_count(&p, 35), 125000 + 1500000, 1e-6);
    NEAR(fs_rate_at(&p, 2.5), 25000, 1e-9);
    assert_int_equal(fs_rate_arrivals(&p), 1625000);
    double prev = -1;
    for (uint64_t k = 0; k < fs_rate_arrivals(&p); k += 1013) {
        double t = fs_rate_arrival(&p, k);
        assert_true(t > prev);
        /* the inverse: N(t_k) = k + 1/2 */
        NEAR(fs_rate_count(&p, t), (double)k + 0.5, 1e-5 * ((double)k + 1));
        prev = t;
    }
    /* arrivals in each second of the ramp grow linearly: 5000, 15000, 25000, ... */
    for (int s = 0; s < 5; s++) NEAR(fs_rate_count(&p, s + 1) - fs_rate_count(&p, s), 5000 + 10000 * s, 1e-6);
    fs_rate_profile_free(&p);
}

static void test_ramp_down_and_pause(void **state)
{
    (void)state;
    fs_rate_profile_t p;
    fs_rate_profile_init(&p);
    assert_int_equal(fs_rate_profile_add(&p, FS_PHASE_SPIKE, 2000, 2000, 1), 0);
    assert_int_equal(fs_rate_profile_add(&p, FS_PHASE_PAUSE, 0, 0, 2), 0);
    assert_int_equal(fs_rate_profile_add(&p, FS_PHASE_RAMP, 1000, 0, 2), 0);
    NEAR(p.total_n, 2000 + 0 + 1000, 1e-9);
    /* nothing is scheduled inside the pause */
    for (uint64_t k = 0; k < fs_rate_arrivals(&p); k++) {
        double t = fs_rate_arrival(&p, k);
        assert_true(t >= 0);
        assert_false(t > 1.0 + 1e-9 && t < 3.0 - 1e-9);
    }
    /* the ramp down puts more arrivals in its first second than in its second */
    double first = fs_rate_count(&p, 4) - fs_rate_count(&p, 3);
    double second = fs_rate_count(&p, 5) - fs_rate_count(&p, 4);
    NEAR(first, 750, 1e-9);
    NEAR(second, 250, 1e-9);
    fs_rate_profile_free(&p);
}

static void test_scale_splits_among_threads(void **state)
{
    (void)state;
    fs_rate_profile_t p;
    fs_rate_profile_init(&p);
    fs_rate_profile_add(&p, FS_PHASE_RAMP, 0, 4000, 2);
    fs_rate_profile_add(&p, FS_PHASE_PLATEAU, 4000, 4000, 3);
    double total = p.total_n;
    fs_rate_profile_scale(&p, 0.25);
    NEAR(p.total_n * 4, total, 1e-9);
    NEAR(fs_rate_at(&p, 4), 1000, 1e-9);
    fs_rate_profile_free(&p);
}

static void test_invalid_phases(void **state)
{
    (void)state;
    fs_rate_profile_t p;
    fs_rate_profile_init(&p);
    assert_int_not_equal(fs_rate_profile_add(&p, FS_PHASE_PLATEAU, 10, 10, 0), 0);
    assert_int_not_equal(fs_rate_profile_add(&p, FS_PHASE_PLATEAU, -1, 10, 1), 0);
    assert_int_not_equal(fs_rate_profile_add(&p, FS_PHASE_PLATEAU, NAN, 10, 1), 0);
    assert_int_equal(p.n, 0);
    assert_int_equal(fs_rate_arrivals(&p), 0);
    fs_rate_profile_free(&p);
}

static void test_parse_phases(void **state)
{
    (void)state;
    fs_rate_phase_t ph;
    char err[200];
    assert_int_equal(fs_rate_parse_phase("ramp 0 50k 5s", &ph, err, sizeof err), 0);
    assert_int_equal(ph.kind, FS_PHASE_RAMP);
    NEAR(ph.from, 0, 0);
    NEAR(ph.to, 50000, 0);
    NEAR(ph.dur_s, 5, 0);
    assert_int_equal(fs_rate_parse_phase("plateau 2500/s 500ms", &ph, err, sizeof err), 0);
    NEAR(ph.from, 2500, 0);
    NEAR(ph.to, 2500, 0);
    NEAR(ph.dur_s, 0.5, 1e-12);
    assert_int_equal(fs_rate_parse_phase("spike 1.5M 2m", &ph, err, sizeof err), 0);
    assert_int_equal(ph.kind, FS_PHASE_SPIKE);
    NEAR(ph.from, 1.5e6, 0);
    NEAR(ph.dur_s, 120, 0);
    assert_int_equal(fs_rate_parse_phase("pause 3", &ph, err, sizeof err), 0);
    NEAR(ph.from + ph.to, 0, 0);
    NEAR(ph.dur_s, 3, 0);

    assert_int_not_equal(fs_rate_parse_phase("ramp 0 5s", &ph, err, sizeof err), 0);
    assert_non_null(strstr(err, "ramp FROM TO DURATION"));
    assert_int_not_equal(fs_rate_parse_phase("plateau fast 5s", &ph, err, sizeof err), 0);
    assert_non_null(strstr(err, "bad rate"));
    assert_int_not_equal(fs_rate_parse_phase("plateau 100 5 parsecs", &ph, err, sizeof err), 0);
    assert_int_not_equal(fs_rate_parse_phase("plateau 100 0s", &ph, err, sizeof err), 0);
    assert_non_null(strstr(err, "bad duration"));
    assert_int_not_equal(fs_rate_parse_phase("surge 100 5s", &ph, err, sizeof err), 0);
    assert_non_null(strstr(err, "unknown phase"));
    assert_int_not_equal(fs_rate_parse_phase("", &ph, err, sizeof err), 0);
    assert_int_not_equal(fs_rate_parse_phase("plateau -5 1s", &ph, err, sizeof err), 0);
}

static void test_parse_duration_and_rate(void **state)
{
    (void)state;
    double v;
    assert_int_equal(fs_parse_duration("250ms", &v), 0);
    NEAR(v, 0.25, 1e-12);
    assert_int_equal(fs_parse_duration("2m", &v), 0);
    NEAR(v, 120, 0);
    assert_int_equal(fs_parse_duration("1.5", &v), 0);
    NEAR(v, 1.5, 0);
    assert_int_equal(fs_parse_duration("100us", &v), 0);
    NEAR(v, 0.0001, 1e-15);
    assert_int_not_equal(fs_parse_duration("100u", &v), 0);
    assert_int_not_equal(fs_parse_duration("5 days", &v), 0);
    assert_int_not_equal(fs_parse_duration("", &v), 0);
    assert_int_equal(fs_parse_rate("20k", &v), 0);
    NEAR(v, 20000, 0);
    assert_int_equal(fs_parse_rate("300/s", &v), 0);
    NEAR(v, 300, 0);
    assert_int_not_equal(fs_parse_rate("20kk", &v), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constant_rate_evenly_spaced),
        cmocka_unit_test(test_ramp_counts_and_monotonic),
        cmocka_unit_test(test_ramp_down_and_pause),
        cmocka_unit_test(test_scale_splits_among_threads),
        cmocka_unit_test(test_invalid_phases),
        cmocka_unit_test(test_parse_phases),
        cmocka_unit_test(test_parse_duration_and_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
