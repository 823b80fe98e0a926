/* A one-shot timer with sub-millisecond resolution on a libuv loop.
 *
 * libuv timers count whole milliseconds, which would add up to a millisecond of scheduling error
 * to every open-loop arrival. The pacer is a Linux timerfd (CLOCK_MONOTONIC, the clock of
 * uv_hrtime) watched by a uv_poll_t, so an arrival is sent within microseconds of its intended
 * time when the loop is not busy.
 *
 * A wake-up is not free (setting the timer, its interrupt, the switch to the thread; on a virtual
 * machine some of these exit to the hypervisor): with step_ns set, the timer fires at the first
 * multiple of step_ns at or after the time asked, so that arrivals closer together than a step
 * share one wake-up.
 *
 * Ownership: the caller embeds fs_pacer_t and must call fs_pacer_close and let the loop run before
 * freeing it (the close callback says when). */
#ifndef FS_LOAD_PACER_H
#define FS_LOAD_PACER_H

#include <stdint.h>
#include <uv.h>

typedef struct fs_pacer fs_pacer_t;
typedef void (*fs_pacer_cb)(fs_pacer_t *p);

struct fs_pacer {
    uv_poll_t poll;
    int fd;
    uint64_t armed_ns; /* 0 when not armed */
    uint64_t step_ns;  /* 0 (the default): fire at the time asked; else round it up to a step */
    int unread;        /* fired, and its expiration not read or reset yet */
    fs_pacer_cb cb;
    void *data;        /* free for the owner */
    void (*closed)(fs_pacer_t *p);
};

/* Returns 0 or FS_EIO (no timerfd). */
int fs_pacer_init(uv_loop_t *loop, fs_pacer_t *p, fs_pacer_cb cb);
/* Fires cb once at uv_hrtime() >= when_ns (at once if it is past). Replaces an earlier time. */
void fs_pacer_at(fs_pacer_t *p, uint64_t when_ns);
void fs_pacer_stop(fs_pacer_t *p);
/* closed (may be NULL) fires once the handle is closed. */
void fs_pacer_close(fs_pacer_t *p, void (*closed)(fs_pacer_t *p));

#endif
