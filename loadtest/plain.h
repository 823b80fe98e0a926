/* Plain mode: keep-alive GETs of one URL from N connections, like wrk; or POSTs of a body in
 * which every "{seq}" becomes a number that differs from request to request (e.g. the shopper of
 * a reservation), cycling through FS_PLAIN_SEQS values per thread. Requests are formatted once,
 * before the run, so a POST costs the load thread no more than a GET.
 *
 * Closed loop (rate 0): every connection sends its next request as soon as the previous answer
 * arrived; latency is measured from the moment a request is written.
 * Open loop (rate > 0): arrivals follow the schedule of rate.h split evenly among the threads;
 * an arrival takes a free connection (one request in flight per connection), and latency is
 * measured from its intended time, so time spent waiting for a connection counts (no coordinated
 * omission). Arrivals that could not be sent before the end are counted as missed. With step_ns,
 * the thread wakes at most once per step and sends every arrival then due: each is sent up to a
 * step late, and that delay counts in its latency. Connections are opened before the start.
 * With warmup_s, the load runs that long first, and only requests sent (closed loop) or due (open
 * loop) after it are measured.
 *
 * Threads: `threads` load threads, each with its own libuv loop and its share of the connections;
 * the calling thread prints progress and merges the results. */
#ifndef FS_LOAD_PLAIN_H
#define FS_LOAD_PLAIN_H

#include "stats.h"

#include <stdint.h>
#include <sys/socket.h>

#define FS_PLAIN_SEQS 16384

typedef struct {
    struct sockaddr_storage addr;
    const char *host_header;  /* value of the Host header */
    const char *path;
    const char *headers;      /* extra "Name: value\r\n" lines or NULL */
    const char *body;         /* POST this body (with {seq} replaced); NULL: GET */
    int connections;
    int threads;
    double duration_s;        /* the measured run */
    double warmup_s;          /* load before it, at the same rate, not measured */
    double rate;              /* arrivals per second; 0 = closed loop */
    uint64_t step_ns;         /* open loop: arrivals are sent in steps of this (see pacer.h) */
    int timeout_ms;
    int progress;             /* print a progress line on stderr every second */
} fs_plain_opts_t;

typedef struct {
    fs_stats_t stats;         /* merged over threads */
    fs_timeline_t timeline;
    double elapsed_s;
    uint64_t intended;        /* open loop: arrivals due within the run */
    uint64_t missed;          /* open loop: due but never sent (no free connection in time) */
    uint64_t connects;        /* TCP connections opened */
} fs_plain_result_t;

/* Runs to completion (duration_s, bounded). Returns 0, or a negative code with a message in err.
 * The caller frees out->timeline with fs_timeline_free. */
int fs_plain_run(const fs_plain_opts_t *o, fs_plain_result_t *out, char *err, size_t errcap);

#endif
