/* Error codes shared by every flashsale program.
 *
 * One return convention (style.md): 0 on success, a negative FS_E* code on failure, FS_EAGAIN when
 * input is incomplete and the caller should call again with more. */
#ifndef FLASHSALE_ERROR_H
#define FLASHSALE_ERROR_H

enum {
    FS_OK = 0,
    FS_EAGAIN = -1,   /* incomplete input: call again with more */
    FS_EINVAL = -2,   /* malformed input */
    FS_ENOMEM = -3,   /* out of memory or over a configured bound */
    FS_ENOTFOUND = -4,
    FS_EUNAVAIL = -5, /* a dependency (Redis) is not reachable or not ready */
    FS_ETIMEDOUT = -6,
    FS_EPROTO = -7,   /* a peer answered something we did not expect */
    FS_EIO = -8,
};

/* A stable lower-case name for an FS_E* code ("ok", "invalid", ...). Never NULL. */
const char *fs_strerror(int code);

#endif
