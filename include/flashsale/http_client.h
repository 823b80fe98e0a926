/* An asynchronous HTTP/1.1 client connection on a libuv loop: keep-alive, pipelining allowed,
 * responses parsed with llhttp. Shared by the programs of flashsale that talk HTTP to a server
 * (the load generator first).
 *
 * One fs_http_client_t is one logical connection to one host:port. It connects lazily on the
 * first request and again after the peer closed the socket. Requests are written in the order
 * they are given (several may be in flight: HTTP/1.1 pipelining) and each gets exactly one
 * callback, in the same order. When the socket fails or closes before an answer arrived, every
 * request written on it and not yet answered completes with FS_EIO (the client does not resend
 * anything: only the caller knows whether a request is safe to repeat).
 *
 * Threads: a client belongs to its loop; call everything from that loop's thread.
 * Ownership: fs_http_client_new allocates; fs_http_client_close frees once its handles are closed
 * (the loop must run for that). */
#ifndef FLASHSALE_HTTP_CLIENT_H
#define FLASHSALE_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct fs_http_client fs_http_client_t;

/* An answer. Valid only while the callback runs. body is NUL-terminated (body_len excludes it). */
typedef struct {
    int status;            /* HTTP status code */
    const char *body;
    size_t body_len;
    int retry_after_s;     /* Retry-After in seconds, -1 when absent or not a number */
    int keep_alive;        /* 0 when the server closes the connection after this answer */
} fs_http_response_t;

/* err is 0 with resp set, or a negative FS_E* code with resp NULL: FS_EIO (could not connect,
 * or the connection failed/closed before the answer), FS_ETIMEDOUT (no complete answer within
 * timeout_ms; the connection is dropped), FS_EPROTO (malformed answer; the connection is
 * dropped). */
typedef void (*fs_http_client_cb)(void *arg, int err, const fs_http_response_t *resp);

typedef struct {
    struct sockaddr_storage addr; /* where to connect (see fs_http_resolve) */
    int timeout_ms;               /* per request, from sending to the complete answer; 0 = none */
    size_t max_body_bytes;        /* larger answers fail with FS_EPROTO; 0 = 16 MiB */
} fs_http_client_opts_t;

/* Creates a client (no connection yet). Returns 0; aborts on out-of-memory. */
int fs_http_client_new(uv_loop_t *loop, const fs_http_client_opts_t *o, fs_http_client_t **out);

/* Sends one complete serialized request (request line, headers, blank line and body).
 * With copy = 0 the bytes are not copied: the caller keeps them unchanged until cb fires (this is
 * the zero-copy path of the load generator, which sends the same bytes again and again).
 * Returns 0 (cb will fire exactly once, never from inside this call) or FS_EINVAL after close. */
int fs_http_client_send(fs_http_client_t *c, const char *req, size_t len, int copy,
                        fs_http_client_cb cb, void *arg);

/* Builds and sends a request: Host and Content-Length are added; extra_headers is NULL or
 * complete "Name: value\r\n" lines; body may be NULL. Same return value as fs_http_client_send. */
int fs_http_client_request(fs_http_client_t *c, const char *method, const char *path,
                           const char *extra_headers, const char *body, size_t body_len,
                           fs_http_client_cb cb, void *arg);

/* Opens the connection now, if there is none, instead of with the first request (a load
 * generator opens its connections before it starts counting). A failure to connect is reported
 * with the next request. Returns 0, or FS_EINVAL after close. */
int fs_http_client_connect(fs_http_client_t *c);

/* Requests given and not answered yet. */
size_t fs_http_client_pending(const fs_http_client_t *c);
/* Connections opened so far (1 + reconnects), for statistics. */
uint64_t fs_http_client_connects(const fs_http_client_t *c);

/* Closes the connection and frees the client once its handles are closed. Every request not
 * answered yet completes with FS_EIO before this returns. The client must not be used after. */
void fs_http_client_close(fs_http_client_t *c);

/* Resolves a numeric IPv4/IPv6 address or a host name (blocking getaddrinfo: call at start-up
 * only) into addr. Returns 0 or FS_EINVAL. */
int fs_http_resolve(const char *host, int port, struct sockaddr_storage *addr);

/* 1 when addr is a loopback address (127.0.0.0/8 or ::1). */
int fs_http_addr_is_loopback(const struct sockaddr_storage *addr);

/* "http://host[:port][/path[?query]]" (IPv6 as [::1]). host must hold 256 bytes, path 2048.
 * The path defaults to "/" and the port to 80. Returns 0 or FS_EINVAL (https is not supported). */
int fs_http_url_parse(const char *url, char *host, int *port, char *path);

#endif
