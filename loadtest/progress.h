/* The live progress line on stderr, once a second. On a terminal the line is rewritten in place
 * (carriage return); otherwise (a pipe, a log file) each update is its own line. */
#ifndef FS_LOAD_PROGRESS_H
#define FS_LOAD_PROGRESS_H

#include "stats.h"

typedef struct {
    int enabled;
    int tty;
    int printed; /* a line is on screen without its newline yet */
} fs_progress_t;

void fs_progress_init(fs_progress_t *p, int enabled);
/* Prints one progress line (without newline; one is added when not on a terminal). */
void fs_progress_print(fs_progress_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Plain mode's line from the latest timeline point. */
void fs_progress_plain(fs_progress_t *p, const fs_tl_point_t *pt, double total_s, double rate);
/* Ends the line (call before printing anything else). */
void fs_progress_done(fs_progress_t *p);

#endif
