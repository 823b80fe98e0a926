/* Our hiredis event adapter for libuv (instead of hiredis's adapters/libuv.h).
 *
 * hiredis asks its adapter to start and stop watching for "readable" and "writable" several times
 * per command, and libuv 1.44's uv_poll_start() turns every change into an epoll_ctl DEL and a
 * later ADD: about eight system calls per command sent. This adapter
 *   - only changes what the poll handle watches when the set really changes (hiredis re-adds
 *     "readable" after every read and every write);
 *   - once connected, writes without waiting for "writable": a command sent during a loop turn
 *     is written by a prepare handle just before the loop's next poll (so the commands of one
 *     turn go out in one write). Only when the socket takes less than everything does it watch
 *     for "writable" until hiredis has written the rest.
 * While connecting it watches for "writable" as hiredis expects (that is how hiredis learns that
 * connect() finished). */
#ifndef FS_REDIS_UV_H
#define FS_REDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

/* Attaches ac to loop, like redisLibuvAttach(). Returns REDIS_OK or REDIS_ERR (then nothing is
 * attached and ac is still the caller's to free). The adapter's handles are closed, and its
 * memory freed in their close callbacks, when hiredis frees ac (its cleanup hook). */
int fs_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

/* A Redis host name looked up off the event loop: hiredis 0.14 resolves a name inside
 * redisAsyncConnect, on the loop, at every (re)connect, and a slow name server would stop the
 * loop that long. fs_redis_lookup calls done(owner, ip, NULL) with an address, or
 * done(owner, NULL, reason): at once (before it returns NULL) when host is an IP address or no
 * lookup can start; else later, on the loop, after a lookup on libuv's thread pool, which it
 * returns. An owner that goes first calls fs_redis_lookup_detach on it: done is then never called
 * (the lookup frees itself when it ends). */
typedef struct fs_redis_lookup fs_redis_lookup_t;
typedef void (*fs_redis_lookup_cb)(void *owner, const char *ip, const char *err);
fs_redis_lookup_t *fs_redis_lookup(uv_loop_t *loop, const char *host, fs_redis_lookup_cb done,
                                   void *owner);
void fs_redis_lookup_detach(fs_redis_lookup_t *l);

#endif
