/* High-resolution one-shot timer: timerfd + uv_poll (see pacer.h). */
#include "pacer.h"
#include "flashsale/error.h"

#include <sys/timerfd.h>
#include <unistd.h>

/* Clears the fd's readiness (EAGAIN when there is none: nothing to do). */
static void fs__drain(fs_pacer_t *p)
{
    uint64_t expirations;
    ssize_t n = read(p->fd, &expirations, sizeof expirations);
    (void)n;
    p->unread = 0;
}

static void fs__on_poll(uv_poll_t *h, int status, int events)
{
    fs_pacer_t *p = h->data;
    (void)status;
    (void)events;
    if (!p->armed_ns) {
        fs__drain(p); /* stopped after it fired */
        return;
    }
    /* Setting the timer again resets its expirations (the fd stops being readable), and the
     * callback nearly always does: the read is only needed when it does not. An early call (the
     * timer was set again after it fired, in the same loop turn) is harmless: callbacks look at
     * the clock. */
    p->armed_ns = 0;
    p->unread = 1;
    p->cb(p);
    if (p->unread) fs__drain(p);
}

int fs_pacer_init(uv_loop_t *loop, fs_pacer_t *p, fs_pacer_cb cb)
{
    p->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (p->fd < 0) return FS_EIO;
    p->cb = cb;
    p->armed_ns = 0;
    p->step_ns = 0;
    p->unread = 0;
    p->closed = NULL;
    if (uv_poll_init(loop, &p->poll, p->fd) < 0) {
        close(p->fd);
        return FS_EIO;
    }
    p->poll.data = p;
    uv_poll_start(&p->poll, UV_READABLE, fs__on_poll);
    return FS_OK;
}

void fs_pacer_at(fs_pacer_t *p, uint64_t when_ns)
{
    if (when_ns == 0) when_ns = 1; /* 0 would disarm */
    if (p->step_ns) when_ns = (when_ns + p->step_ns - 1) / p->step_ns * p->step_ns;
    if (p->armed_ns == when_ns) return;
    struct itimerspec its = {
        .it_value = {.tv_sec = (time_t)(when_ns / 1000000000u), .tv_nsec = (long)(when_ns % 1000000000u)},
    };
    timerfd_settime(p->fd, TFD_TIMER_ABSTIME, &its, NULL);
    p->armed_ns = when_ns;
    p->unread = 0;
}

void fs_pacer_stop(fs_pacer_t *p)
{
    if (!p->armed_ns) return;
    struct itimerspec its = {0};
    timerfd_settime(p->fd, 0, &its, NULL);
    p->armed_ns = 0;
    p->unread = 0;
}

static void fs__on_closed(uv_handle_t *h)
{
    fs_pacer_t *p = h->data;
    close(p->fd);
    p->fd = -1;
    if (p->closed) p->closed(p);
}

void fs_pacer_close(fs_pacer_t *p, void (*closed)(fs_pacer_t *p))
{
    fs_pacer_stop(p);
    p->closed = closed;
    uv_close((uv_handle_t *)&p->poll, fs__on_closed);
}
