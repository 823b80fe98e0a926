/* A Redis pub/sub subscriber on a libuv loop (its own hiredis async connection, since a subscribed
 * connection can send nothing else). Reconnects with backoff; every (re)subscription is reported
 * so that the owner can forget whatever it cached, as messages sent while it was disconnected are
 * lost. Knows nothing of what the messages mean. */
#ifndef FS_REDIS_SUB_H
#define FS_REDIS_SUB_H

#include <stddef.h>
#include <uv.h>

typedef struct fs_redis_sub fs_redis_sub_t;

/* msg/len: one message of the channel. msg == NULL: the subscription (re)started. */
typedef void (*fs_redis_sub_cb)(const char *msg, size_t len, void *arg);

fs_redis_sub_t *fs_redis_sub_new(uv_loop_t *loop, const char *host, int port, const char *channel,
                                 fs_redis_sub_cb cb, void *arg);
/* Disconnects and frees the subscriber once its handles are closed (the loop must run). */
void fs_redis_sub_close(fs_redis_sub_t *s);

#endif
