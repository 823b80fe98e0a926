/* Reports of a run: the terminal summary, the JSON document (jansson) and the self-contained HTML
 * page built from that document.
 *
 * The JSON document is the single source: the HTML report embeds it and draws its charts from it
 * in the browser (inline SVG, no network). Fields (see docs/loadtest.md): mode, requests,
 * duration_s, requests_per_sec, latency_ms {p50 p90 p99 p999 max mean}, status {code: count},
 * errors {code: count}, kinds {kind: {...}}, timeline [...], and campaign-only fields added by
 * the campaign runner.
 *
 * Ownership: fs_report_base returns a new reference the caller json_decref()s. */
#ifndef FS_LOAD_REPORT_H
#define FS_LOAD_REPORT_H

#include "stats.h"

#include <jansson.h>
#include <stdio.h>

json_t *fs_report_latency_json(const fs_hist_t *h);
json_t *fs_report_base(const char *mode, const fs_stats_t *s, const fs_timeline_t *tl,
                       double elapsed_s);
/* Latency table per kind, status and error counts. */
void fs_report_print_stats(FILE *f, const fs_stats_t *s, double elapsed_s);
/* Writes doc to path (pretty-printed). Returns 0 or FS_EIO with a message in err. */
int fs_report_write_json(const json_t *doc, const char *path, char *err, size_t errcap);
/* Writes the HTML report for doc. Returns 0 or FS_EIO with a message in err. */
int fs_report_write_html(const json_t *doc, const char *path, char *err, size_t errcap);

#endif
