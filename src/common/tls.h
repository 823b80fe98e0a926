/* TLS for our clients (the relay's deliveries, Redis over TLS): OpenSSL driven through memory
 * BIOs, so that the socket stays a plain libuv stream. The connection feeds the bytes it reads into the engine and sends whatever
 * ciphertext the engine produces; the engine never touches a file descriptor.
 *
 * Verification is always on: the peer's chain must lead to a trusted root (the system store, or
 * only the given CA file) and its certificate must name the host we dialled (DNS name through
 * SNI + hostname check, or an IP address SAN for an IP literal). There is no option to turn it off.
 *
 * Ownership: fs_tls_ctx_new allocates a context shared by every connection of one client, freed by
 * fs_tls_ctx_free after the last engine; fs_tls_new allocates an engine per connection, freed by
 * fs_tls_free. One thread. */
#ifndef FS_COMMON_TLS_H
#define FS_COMMON_TLS_H

#include "buf.h"

#include <stddef.h>

typedef struct fs_tls_ctx fs_tls_ctx_t;
typedef struct fs_tls fs_tls_t;

/* Creates a client context: TLS 1.2 or newer, peer verification required, trusting ca_file (a
 * PEM bundle) when it is not NULL or empty, else the system's default store. Returns 0, or
 * FS_EINVAL with a message in err (for example an unreadable CA file). */
int fs_tls_ctx_new(fs_tls_ctx_t **out, const char *ca_file, char *err, size_t errcap);
/* Presents cert_file (a PEM chain) with key_file to servers that ask for a client certificate
 * (Redis's tls-auth-clients). Returns 0, or FS_EINVAL with a message in err. */
int fs_tls_ctx_set_cert(fs_tls_ctx_t *ctx, const char *cert_file, const char *key_file, char *err,
                        size_t errcap);
void fs_tls_ctx_free(fs_tls_ctx_t *ctx);

/* A client engine for one connection to host (an IP literal when host_is_ip). Never fails (out of
 * memory aborts). */
fs_tls_t *fs_tls_new(fs_tls_ctx_t *ctx, const char *host, int host_is_ip);
void fs_tls_free(fs_tls_t *t);

/* Hands ciphertext read from the socket to the engine. */
void fs_tls_feed(fs_tls_t *t, const char *p, size_t n);

/* Advances the handshake. Returns 0 once it is complete (the peer is verified), FS_EAGAIN when it
 * needs more bytes from the peer (send fs_tls_take_output first), FS_EPROTO when it failed: then
 * err says why, e.g. "certificate verify failed: unable to get local issuer certificate". */
int fs_tls_handshake(fs_tls_t *t, char *err, size_t errcap);

/* Encrypts all of p (after the handshake). Returns 0 or FS_EPROTO with a message in err. */
int fs_tls_write(fs_tls_t *t, const char *p, size_t n, char *err, size_t errcap);

/* Decrypts into out. Returns the number of bytes (> 0), FS_EAGAIN when no complete record is
 * buffered, 0 when the peer sent close_notify, FS_EPROTO on a failure (message in err). */
int fs_tls_read(fs_tls_t *t, char *out, size_t cap, char *err, size_t errcap);

/* Appends the ciphertext waiting to be sent to out; returns how many bytes were appended. */
size_t fs_tls_take_output(fs_tls_t *t, fs_buf_t *out);

#endif
