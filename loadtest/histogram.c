/* Log-linear latency histogram (see histogram.h). */
#include "histogram.h"

#include <math.h>
#include <string.h>

void fs_hist_init(fs_hist_t *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

unsigned fs_hist_index(uint64_t v)
{
    if (v < FS_HIST_SUB) return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    if (e > FS_HIST_MAX_EXP) return FS_HIST_BUCKETS - 1;
    unsigned shift = e - FS_HIST_SUB_BITS;
    unsigned sub = (unsigned)(v >> shift) - FS_HIST_SUB;
    return FS_HIST_SUB + shift * FS_HIST_SUB + sub;
}

uint64_t fs_hist_bucket_low(unsigned i)
{
    if (i < FS_HIST_SUB) return i;
    unsigned shift = (i - FS_HIST_SUB) / FS_HIST_SUB;
    unsigned sub = (i - FS_HIST_SUB) % FS_HIST_SUB;
    return (uint64_t)(FS_HIST_SUB + sub) << shift;
}

uint64_t fs_hist_bucket_width(unsigned i)
{
    if (i < FS_HIST_SUB) return 1;
    return (uint64_t)1 << ((i - FS_HIST_SUB) / FS_HIST_SUB);
}

void fs_hist_record_n(fs_hist_t *h, uint64_t v, uint64_t n)
{
    if (!n) return;
    h->buckets[fs_hist_index(v)] += n;
    h->count += n;
    h->sum += (double)v * (double)n;
    if (v < h->min) h->min = v;
    if (v > h->max) h->max = v;
}

void fs_hist_record(fs_hist_t *h, uint64_t v)
{
    fs_hist_record_n(h, v, 1);
}

void fs_hist_merge(fs_hist_t *dst, const fs_hist_t *src)
{
    if (!src->count) return;
    for (unsigned i = 0; i < FS_HIST_BUCKETS; i++) dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min) dst->min = src->min;
    if (src->max > dst->max) dst->max = src->max;
}

uint64_t fs_hist_percentile(const fs_hist_t *h, double p)
{
    if (!h->count) return 0;
    if (p <= 0) return h->min;
    if (p >= 100) return h->max;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->count);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < FS_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t v = fs_hist_bucket_low(i) + fs_hist_bucket_width(i) / 2;
            if (v < h->min) v = h->min;
            if (v > h->max) v = h->max;
            return v;
        }
    }
    return h->max;
}

double fs_hist_mean(const fs_hist_t *h)
{
    return h->count ? h->sum / (double)h->count : 0.0;
}
