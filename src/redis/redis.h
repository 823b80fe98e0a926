/* Asynchronous Redis client on a libuv loop (hiredis 0.14 async API + its libuv adapter).
 *
 * hiredis 0.14 has no async timeouts, so every command carries our own deadline: one timer per
 * client watches the oldest command in flight (Redis answers in order) and, past its deadline,
 * drops the connection (every pending command fails with FS_ETIMEDOUT) and reconnects with
 * exponential backoff. On every (re)connect the client authenticates (with a password), selects
 * the database and loads the Lua library with FUNCTION LOAD REPLACE; it is "ready" only once that
 * succeeded. A command answered "Function not found" (someone ran FUNCTION FLUSH) makes the client
 * reload the library and send the command once more.
 *
 * Knows nothing of HTTP or flash sales. One client belongs to one loop (thread). */
#ifndef FS_REDIS_H
#define FS_REDIS_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct fs_redis fs_redis_t;

/* Fires exactly once per command. err is FS_OK with a reply (which may be a Redis error reply,
 * REDIS_REPLY_ERROR), or a negative code with reply NULL: FS_EUNAVAIL (not ready; this one fires
 * synchronously, inside the call that sent the command), FS_ETIMEDOUT, FS_EIO (connection lost).
 * The reply is freed by the client after the callback returns. */
typedef void (*fs_redis_cb)(redisReply *reply, int err, void *arg);

typedef struct {
    const char *host;
    int port;
    const char *user;     /* AUTH as this ACL user (NULL or "": the default user)... */
    const char *password; /* ...when this is set (NULL or "": no AUTH) */
    struct fs_tls_ctx *tls; /* rediss://: through a TLS pump (redis_tls.h), verified against host;
                               NULL: plain TCP */
    int db;
    int timeout_ms;                 /* per command */
    const char *library;            /* Lua library text, loaded on connect */
    size_t library_len;
    void (*on_ready)(int ready, void *arg); /* readiness changes */
    void *arg;
    const char *name;               /* for logs */
} fs_redis_opts_t;

typedef struct {
    uint64_t commands, errors, timeouts;
    uint64_t reconnects; /* connections lost: dropped by us (a deadline) or closed by the peer */
} fs_redis_stats_t;

/* Creates the client and starts connecting. Never fails (out of memory aborts). */
fs_redis_t *fs_redis_new(uv_loop_t *loop, const fs_redis_opts_t *o);
/* Sends a command. argv strings are copied before the call returns. */
void fs_redis_command(fs_redis_t *r, fs_redis_cb cb, void *arg, int argc, const char **argv,
                      const size_t *lens);
int fs_redis_ready(const fs_redis_t *r);
size_t fs_redis_in_flight(const fs_redis_t *r);
fs_redis_stats_t fs_redis_stats(const fs_redis_t *r);
/* Disconnects (pending commands fail with FS_EIO) and frees the client once its handles are
 * closed; the loop must run for that. */
void fs_redis_close(fs_redis_t *r);

/* Helpers for reading replies: an integer or numeric string as int64 (0 and *ok=0 otherwise), and a
 * string (or integer printed into tmp) with its length. */
int64_t fs_reply_i64(const redisReply *r, int *ok);
const char *fs_reply_str(const redisReply *r, size_t *len);

/* 1 if r is an error by which Redis refuses a call for now (out of memory, busy with a script,
 * loading, read-only, ...: worth a retry, so an unavailable answer rather than an internal
 * error), else 0. A refusal is also logged (redis_refused, a warning at most once a second per
 * thread, with how many were not logged since). */
int fs_redis_refused(const redisReply *r);

#endif
