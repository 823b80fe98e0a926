/* Progress line on stderr (see progress.h). */
#include "progress.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

void fs_progress_init(fs_progress_t *p, int enabled)
{
    p->enabled = enabled;
    p->tty = isatty(2);
    p->printed = 0;
}

void fs_progress_print(fs_progress_t *p, const char *fmt, ...)
{
    if (!p->enabled) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (p->tty) {
        fprintf(stderr, "\r\033[K%s", line);
        p->printed = 1;
    } else {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

void fs_progress_plain(fs_progress_t *p, const fs_tl_point_t *pt, double total_s, double rate)
{
    char offered[48] = "";
    if (rate > 0) snprintf(offered, sizeof offered, " (offered %.0f/s)", pt->offered);
    fs_progress_print(p, "[%5.1fs/%.0fs] %9.0f req/s%s  p50 %.3fms  p99 %.3fms  max %.3fms  errors %llu",
                      pt->t, total_s, pt->achieved, offered, pt->p50[FS_KIND_GET],
                      pt->p99[FS_KIND_GET], pt->max[FS_KIND_GET], (unsigned long long)pt->failed);
}

void fs_progress_done(fs_progress_t *p)
{
    if (p->enabled && p->tty && p->printed) fputc('\n', stderr);
    p->printed = 0;
}
