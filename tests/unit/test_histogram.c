/* Unit tests of loadtest/histogram.c: percentiles against exact percentiles of known data,
 * bounded relative error over the whole range, merging, edge cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "histogram.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int fs__cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted data: the smallest value with at least p% at or below it. */
static uint64_t fs__exact(const uint64_t *sorted, size_t n, double p)
{
    if (p <= 0) return sorted[0];
    size_t rank = (size_t)ceil(p / 100.0 * (double)n);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return sorted[rank - 1];
}

static void fs__check_against_exact(uint64_t *data, size_t n)
{
    fs_hist_t *h = malloc(sizeof *h);
    fs_hist_init(h);
    for (size_t i = 0; i < n; i++) fs_hist_record(h, data[i]);
    qsort(data, n, sizeof *data, fs__cmp_u64);
    static const double ps[] = {0, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 100};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        double exact = (double)fs__exact(data, n, ps[i]);
        double got = (double)fs_hist_percentile(h, ps[i]);
        double rel = exact > 0 ? fabs(got - exact) / exact : fabs(got);
        if (rel > 0.01) fail_msg("p%g: histogram %.0f, exact %.0f (error %.3f%%)", ps[i], got, exact, 100 * rel);
    }
    assert_int_equal(h->count, n);
    assert_int_equal(h->min, data[0]);
    assert_int_equal(h->max, data[n - 1]);
    free(h);
}

static uint64_t fs__rng_state = 88172645463325252ull;
static uint64_t fs__rand(void)
{
    fs__rng_state ^= fs__rng_state << 13;
    fs__rng_state ^= fs__rng_state >> 7;
    fs__rng_state ^= fs__rng_state << 17;
    return fs__rng_state;
}
static double fs__unit(void)
{
    return ((double)(fs__rand() >> 11) + 0.5) / 9007199254740992.0;
}

static void test_uniform_sequence(void **state)
{
    (void)state;
    size_t n = 100000;
    uint64_t *d = malloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = i + 1;
    fs__check_against_exact(d, n);
    free(d);
}

static void test_lognormal_latencies(void **state)
{
    (void)state;
    /* latencies around 200 us with a long tail, in ns */
    size_t n = 200000;
    uint64_t *d = malloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) {
        double z = sqrt(-2 * log(fs__unit())) * cos(2 * M_PI * fs__unit());
        d[i] = (uint64_t)(200000.0 * exp(0.8 * z));
    }
    fs__check_against_exact(d, n);
    free(d);
}

static void test_bimodal_with_stalls(void **state)
{
    (void)state;
    /* mostly 50 us, 1% stalls of 0.5 to 2 s: the shape coordinated omission is about */
    size_t n = 50000;
    uint64_t *d = malloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++)
        d[i] = (i % 100 == 0) ? 500000000u + fs__rand() % 1500000000u : 40000 + fs__rand() % 20000;
    fs__check_against_exact(d, n);
    free(d);
}

static void test_small_values_exact(void **state)
{
    (void)state;
    fs_hist_t *h = malloc(sizeof *h);
    fs_hist_init(h);
    for (uint64_t v = 0; v < 128; v++) fs_hist_record(h, v);
    for (uint64_t v = 0; v < 128; v++) {
        double p = 100.0 * (double)(v + 1) / 128.0;
        assert_int_equal(fs_hist_percentile(h, p), v);
    }
    free(h);
}

static void test_relative_error_bound_everywhere(void **state)
{
    (void)state;
    /* every value from 1 to 2^40 maps to a bucket whose midpoint is within 0.4% of it */
    for (int e = 0; e < 40; e++) {
        for (int j = 0; j < 64; j++) {
            uint64_t v = ((uint64_t)1 << e) + (fs__rand() % ((uint64_t)1 << e));
            unsigned i = fs_hist_index(v);
            uint64_t lo = fs_hist_bucket_low(i), w = fs_hist_bucket_width(i);
            assert_true(lo <= v && v < lo + w);
            double mid = (double)lo + (double)(w / 2);
            assert_true(fabs(mid - (double)v) / (double)v <= 0.004 + 1e-12);
        }
    }
    /* the buckets tile the range without gaps */
    for (unsigned i = 0; i + 1 < FS_HIST_BUCKETS; i++)
        assert_int_equal(fs_hist_bucket_low(i) + fs_hist_bucket_width(i), fs_hist_bucket_low(i + 1));
}

static void test_huge_values_clamp(void **state)
{
    (void)state;
    fs_hist_t *h = malloc(sizeof *h);
    fs_hist_init(h);
    fs_hist_record(h, UINT64_MAX / 2);
    fs_hist_record(h, 5);
    assert_int_equal(fs_hist_index(UINT64_MAX / 2), FS_HIST_BUCKETS - 1);
    assert_int_equal(fs_hist_percentile(h, 100), UINT64_MAX / 2);
    assert_int_equal(fs_hist_percentile(h, 50), 5);
    free(h);
}

static void test_empty(void **state)
{
    (void)state;
    fs_hist_t *h = malloc(sizeof *h);
    fs_hist_init(h);
    assert_int_equal(fs_hist_percentile(h, 50), 0);
    assert_true(fs_hist_mean(h) == 0.0);
    free(h);
}

static void test_merge_equals_single(void **state)
{
    (void)state;
    fs_hist_t *a = malloc(sizeof *a), *b = malloc(sizeof *b), *all = malloc(sizeof *all);
    fs_hist_init(a);
    fs_hist_init(b);
    fs_hist_init(all);
    for (int i = 0; i < 100000; i++) {
        uint64_t v = 1000 + fs__rand() % 10000000;
        fs_hist_record(i % 3 ? a : b, v);
        fs_hist_record(all, v);
    }
    fs_hist_merge(a, b);
    assert_int_equal(a->count, all->count);
    assert_int_equal(a->min, all->min);
    assert_int_equal(a->max, all->max);
    assert_memory_equal(a->buckets, all->buckets, sizeof a->buckets);
    assert_true(fabs(a->sum - all->sum) < 1e-6 * all->sum);
    free(a);
    free(b);
    free(all);
}

static void test_record_n_and_mean(void **state)
{
    (void)state;
    fs_hist_t *h = malloc(sizeof *h);
    fs_hist_init(h);
    fs_hist_record_n(h, 1000, 99);
    fs_hist_record_n(h, 100000, 1);
    assert_int_equal(h->count, 100);
    assert_true(fabs(fs_hist_mean(h) - 1990.0) < 1e-9);
    assert_true(fabs((double)fs_hist_percentile(h, 99) - 1000) / 1000 <= 0.01);
    assert_int_equal(fs_hist_percentile(h, 99.5), 100000);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uniform_sequence),
        cmocka_unit_test(test_lognormal_latencies),
        cmocka_unit_test(test_bimodal_with_stalls),
        cmocka_unit_test(test_small_values_exact),
        cmocka_unit_test(test_relative_error_bound_everywhere),
        cmocka_unit_test(test_huge_values_clamp),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_merge_equals_single),
        cmocka_unit_test(test_record_n_and_mean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
