/* A Redis pub/sub subscriber on a libuv loop (its own hiredis async connection, since a subscribed
 * connection can send nothing else). Reconnects with backoff; every (re)subscription is reported
 * so that the owner can forget whatever it cached, as messages sent while it was disconnected are
 * lost. Knows nothing of what the messages mean.
 *
 * A subscription can also go silent without closing (a stalled connection, a peer gone without a
 * reset): nothing on it fails, and every message after it is lost. So, once subscribed, it sends a
 * probe every FS_REDIS_SUB_PROBE_MS (SUBSCRIBE to the same channel again, which Redis confirms
 * and which changes nothing); a probe unanswered within timeout_ms, or a first subscription not
 * confirmed within timeout_ms of connecting (at least a second), drops the connection
 * ("redis_subscription_stalled" in the log) and a new one is made, reported as any other. */
#ifndef FS_REDIS_SUB_H
#define FS_REDIS_SUB_H

#include "redis.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct fs_redis_sub fs_redis_sub_t;

/* msg/len: one message of the channel. msg == NULL: the subscription (re)started. */
typedef void (*fs_redis_sub_cb)(const char *msg, size_t len, void *arg);

#define FS_REDIS_SUB_PROBE_MS 1000

/* Subscribes to channel on the Redis of o (its host, port, user, password and timeout_ms; the
 * rest is not used), on a connection of its own. */
fs_redis_sub_t *fs_redis_sub_new(uv_loop_t *loop, const fs_redis_opts_t *o, const char *channel,
                                 fs_redis_sub_cb cb, void *arg);
/* Connections it lost so far: closed by Redis or the network, or dropped as silent. */
uint64_t fs_redis_sub_lost(const fs_redis_sub_t *s);
/* Disconnects and frees the subscriber once its handles are closed (the loop must run). */
void fs_redis_sub_close(fs_redis_sub_t *s);

#endif
