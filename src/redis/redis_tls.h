/* Redis over TLS with hiredis 0.14, which has no TLS: a pump in our own code.
 *
 * For each connection, fs_redis_tls_dial listens on a unix socket of its own (in a private
 * directory, mode 0700) and connects to Redis over TCP; hiredis is pointed at the unix socket
 * (redisAsyncConnectUnix) and talks plain RESP there, while the pump carries the bytes through a
 * TLS session (common/tls.h: verification always on, the Redis host's name or IP address checked,
 * a client certificate presented when configured). What hiredis writes before the handshake is
 * done waits in the pump. When either side ends (hiredis drops the connection, Redis or the
 * network closes it, the handshake or the certificate check fails: `redis_tls_failed` in the
 * log), the pump closes the other and frees itself, and hiredis sees its connection end as with
 * any lost connection. The unix socket's path is removed once hiredis is connected; the pump
 * gives up if hiredis does not connect within a few seconds.
 *
 * The pump belongs to the loop it runs on; nothing of it is shared between threads except the
 * TLS context, which OpenSSL allows. */
#ifndef FS_REDIS_TLS_H
#define FS_REDIS_TLS_H

#include "../common/tls.h"
#include "flashsale/config.h"

#include <stddef.h>
#include <uv.h>

/* Starts a pump to Redis at ip:port (an address), verified against name (the host of the URL).
 * Writes the unix socket's path into path (cap bytes; 108 is enough) and returns 0, or a negative
 * libuv code (nothing started). */
int fs_redis_tls_dial(uv_loop_t *loop, fs_tls_ctx_t *ctx, const char *ip, int port,
                      const char *name, char *path, size_t cap);

/* The TLS context for u: NULL in *out when u is not rediss://; else one trusting ca_file (""
 * for the system's roots), presenting cert_file and key_file when given. Returns 0, or FS_EINVAL
 * with a message in err. */
int fs_redis_tls_ctx(const fs_redis_url_t *u, const char *ca_file, const char *cert_file,
                     const char *key_file, fs_tls_ctx_t **out, char *err, size_t errcap);

#endif
