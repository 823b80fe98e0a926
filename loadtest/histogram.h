/* Latency histogram with log-linear buckets: bounded memory, bounded relative error, mergeable.
 *
 * Values are unsigned integers (the load generator records nanoseconds). Values below 128 have a
 * bucket each; above, every power of two [2^e, 2^(e+1)) is split into 128 equal buckets, so a
 * bucket is at most 1/128 of its lower bound wide and a reported value (the bucket's midpoint,
 * clamped to the exact min and max) is within 0.4% of the true one. Values up to 2^40 (about 18
 * minutes in nanoseconds) are bucketed; larger ones land in the last bucket (max stays exact).
 *
 * Memory: one fixed-size struct (about 35 KiB), no allocation. Merging adds counts, so histograms
 * of several threads or intervals combine exactly as if all values had been recorded in one. */
#ifndef FS_LOAD_HISTOGRAM_H
#define FS_LOAD_HISTOGRAM_H

#include <stdint.h>

#define FS_HIST_SUB_BITS 7
#define FS_HIST_SUB (1u << FS_HIST_SUB_BITS)
#define FS_HIST_MAX_EXP 40
#define FS_HIST_BUCKETS (FS_HIST_SUB + (FS_HIST_MAX_EXP - FS_HIST_SUB_BITS + 1) * FS_HIST_SUB)

typedef struct {
    uint64_t count;
    uint64_t min, max;   /* exact; min is UINT64_MAX while empty */
    double sum;
    uint64_t buckets[FS_HIST_BUCKETS];
} fs_hist_t;

void fs_hist_init(fs_hist_t *h);
void fs_hist_record(fs_hist_t *h, uint64_t v);
/* Records v n times. */
void fs_hist_record_n(fs_hist_t *h, uint64_t v, uint64_t n);
/* dst += src. */
void fs_hist_merge(fs_hist_t *dst, const fs_hist_t *src);
/* The value at percentile p (0..100) by nearest rank: the smallest recorded value v such that at
 * least p% of the values are <= v, reported as its bucket's midpoint (clamped to [min, max]).
 * Returns 0 for an empty histogram. */
uint64_t fs_hist_percentile(const fs_hist_t *h, double p);
double fs_hist_mean(const fs_hist_t *h);
/* The bucket index of v, and the lowest value and width of a bucket (exposed for tests). */
unsigned fs_hist_index(uint64_t v);
uint64_t fs_hist_bucket_low(unsigned i);
uint64_t fs_hist_bucket_width(unsigned i);

#endif
