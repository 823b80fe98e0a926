/* What a run measures: per request kind latency histograms, status and error-code counts,
 * campaign outcomes, and a timeline with one point per second.
 *
 * Threads: each load thread owns one fs_stats_t and records into it without locks. Once a second
 * it pushes its window (the last second's histograms and counters) into the shared fs_timeline_t,
 * which merges the windows of every thread and, when all have reported a second, appends one
 * point. At the end the threads' totals are merged with fs_stats_merge.
 *
 * Ownership: callers own both structs (fs_timeline_free releases the points). */
#ifndef FS_LOAD_STATS_H
#define FS_LOAD_STATS_H

#include "histogram.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { FS_KIND_GET, FS_KIND_RESERVE, FS_KIND_CONFIRM, FS_KIND_CANCEL, FS_KIND_N } fs_kind_t;

/* Error codes of answers (the "error" field of the API's error bodies), plus the two ways of
 * getting no answer at all. FS_CODE_NONE is a success. */
typedef enum {
    FS_CODE_NONE,
    FS_CODE_SOLD_OUT,
    FS_CODE_LIMIT_EXCEEDED,
    FS_CODE_LAUNCH_NOT_OPEN,
    FS_CODE_NOT_FOUND,
    FS_CODE_RES_EXPIRED,
    FS_CODE_RES_CANCELLED,
    FS_CODE_RES_CONFIRMED,
    FS_CODE_UNAVAILABLE,
    FS_CODE_OVERLOADED,
    FS_CODE_RATE_LIMITED,
    FS_CODE_INVALID_REQUEST,
    FS_CODE_UNAUTHORIZED,
    FS_CODE_OTHER,
    FS_CODE_TRANSPORT, /* connection failed or closed before the answer */
    FS_CODE_TIMEOUT,
    FS_CODE_N
} fs_code_t;

/* What became of each shopper's attempt (campaign mode). */
typedef enum {
    FS_OUT_HELD,          /* reservation 201 */
    FS_OUT_CONFIRMED,     /* confirm 200 */
    FS_OUT_CANCELLED,     /* cancel 200 */
    FS_OUT_ABANDONED,     /* held, then left to expire on purpose */
    FS_OUT_SOLD_OUT,
    FS_OUT_LIMIT,
    FS_OUT_NOT_OPEN,
    FS_OUT_EXPIRED,       /* confirm answered reservation_expired */
    FS_OUT_RETRIED,       /* a retry was scheduled (429, 503, transport error, timeout) */
    FS_OUT_GAVE_UP,       /* retries exhausted */
    FS_OUT_FAILED,        /* any other error answer */
    FS_OUT_N
} fs_outcome_t;

const char *fs_kind_name(fs_kind_t k);
const char *fs_code_name(fs_code_t c);
const char *fs_outcome_name(fs_outcome_t o);
/* The code of an error body's "error" string (FS_CODE_OTHER when unknown). */
fs_code_t fs_code_parse(const char *s, size_t n);

#define FS_STATUS_MAX 600

typedef struct {
    fs_hist_t total;               /* latency in ns over the whole run */
    fs_hist_t win;                 /* latency in the current window */
    uint64_t answered;             /* requests with an answer (any status) */
    uint64_t status[FS_STATUS_MAX];
    uint64_t codes[FS_CODE_N];
    uint64_t win_answered, win_failed;
} fs_kind_stats_t;

typedef struct {
    fs_kind_stats_t kind[FS_KIND_N];
    uint64_t offered, win_offered;     /* arrivals intended (open loop and campaigns) */
    uint64_t sent;                     /* requests written */
    uint64_t outcomes[FS_OUT_N];
    uint64_t win_outcomes[FS_OUT_N];
} fs_stats_t;

void fs_stats_init(fs_stats_t *s);
/* Records one request of kind k: latency_ns, and either an answer's status (> 0) with its error
 * code, or status 0 with FS_CODE_TRANSPORT / FS_CODE_TIMEOUT. */
void fs_stats_record(fs_stats_t *s, fs_kind_t k, uint64_t latency_ns, int status, fs_code_t code);
void fs_stats_outcome(fs_stats_t *s, fs_outcome_t o);
/* dst += src (totals; windows are ignored). */
void fs_stats_merge(fs_stats_t *dst, const fs_stats_t *src);
/* Requests of every kind with an answer / without one. */
uint64_t fs_stats_answered(const fs_stats_t *s);
uint64_t fs_stats_failed(const fs_stats_t *s);

/* One second of the run. Latencies in milliseconds. */
typedef struct {
    double t;                       /* seconds since the start, end of this second */
    double offered;                 /* arrivals intended in this second */
    double achieved;                /* answers received in this second (all kinds) */
    uint64_t failed;                /* requests without an answer in this second */
    uint64_t n[FS_KIND_N];
    double p50[FS_KIND_N], p90[FS_KIND_N], p99[FS_KIND_N], max[FS_KIND_N];
    uint64_t outcomes[FS_OUT_N];
} fs_tl_point_t;

#define FS_TL_RING 4

typedef struct {
    pthread_mutex_t mu;
    int nthreads;
    struct {
        long sec;                   /* which second this slot accumulates, -1 when free */
        int contributors;
        fs_stats_t acc;             /* only the window fields are used */
    } ring[FS_TL_RING];
    fs_tl_point_t *points;
    size_t n, cap;
} fs_timeline_t;

void fs_timeline_init(fs_timeline_t *tl, int nthreads);
void fs_timeline_free(fs_timeline_t *tl);
/* Called by each thread once per second (sec = 0, 1, ...) and once at the end for the partial
 * last second (with its length in seconds, else 1): merges s's window into the timeline and
 * resets the window. */
void fs_timeline_push(fs_timeline_t *tl, long sec, double len_s, fs_stats_t *s);
/* Copies the latest point into *out; returns 0 when there is none yet. Thread-safe. */
int fs_timeline_last(fs_timeline_t *tl, fs_tl_point_t *out);

#endif
