/* The HTTP/1.1 server: listeners and connections on a libuv loop, requests parsed by llhttp.
 *
 * It knows nothing of flash sales or Redis: it hands each complete request to one callback and
 * writes the response the handler gives back, once, possibly later (asynchronously). Requests of
 * one connection are handled one at a time, in order, so pipelined requests are answered in order;
 * while a request is being handled, the connection is not read (backpressure).
 *
 * Limits: request line + headers over max_header_bytes → 431, body over max_body_bytes → 413,
 * malformed HTTP → 400; all three close the connection. Idle keep-alive connections, and requests
 * that take longer than idle_timeout_ms to arrive, are closed. */
#ifndef FS_HTTP_H
#define FS_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct {
    const char *p;
    size_t n;
} fs_str_t;

#define FS_HTTP_MAX_PARAMS 4
#define FS_HTTP_MAX_HEADERS 64

typedef struct fs_http_server fs_http_server_t;
typedef struct fs_http_conn fs_http_conn_t;

/* One request. Owned by its connection; valid from the on_request callback until fs_http_respond
 * returns. Every fs_str_t points into the connection's buffers (not NUL-terminated). */
typedef struct fs_http_req {
    fs_http_conn_t *conn;
    int method;           /* llhttp_method_t: HTTP_GET, HTTP_POST, ... */
    fs_str_t path;        /* without the query */
    fs_str_t query;       /* after '?', may be empty */
    fs_str_t params[FS_HTTP_MAX_PARAMS]; /* filled by the router */
    const char *body;     /* NUL-terminated copy of the body */
    size_t body_len;
    int route;            /* set by the application's router; -1 before */
    uint64_t start_ns;    /* monotonic time the request was complete */
    void *app;            /* free for the application while the request is in flight */
} fs_http_req_t;

typedef void (*fs_http_on_request)(fs_http_req_t *req, void *user);

typedef struct {
    const char *host;
    int port;
    int idle_timeout_ms;
    size_t max_header_bytes;
    size_t max_body_bytes;
    int reuseport;        /* set SO_REUSEPORT before binding (several loops, one port) */
    fs_http_on_request on_request;
    void *user;
    _Atomic uint64_t *open_gauge; /* optional: kept equal to the number of open connections */
} fs_http_server_opts_t;

/* Binds and listens. On failure returns a negative code and writes a message into err (for
 * example "address already in use"). The server belongs to the loop; free it with
 * fs_http_server_close. */
int fs_http_server_start(fs_http_server_t **out, uv_loop_t *loop, const fs_http_server_opts_t *o,
                         char *err, size_t errcap);
/* Graceful stop: closes the listener, closes idle connections at once and every other connection
 * after its current response. `done` fires (once) when no connection is left. */
void fs_http_server_drain(fs_http_server_t *s, void (*done)(void *arg), void *arg);
/* Closes every connection and the listener at once; frees the server once all handles are closed
 * (the loop must run to let that happen). Requests still in flight are answered into the void. */
void fs_http_server_close(fs_http_server_t *s);
size_t fs_http_server_connections(const fs_http_server_t *s);

/* A request header by lower-case name; returns 1 and sets *out when present. */
int fs_http_req_header(const fs_http_req_t *req, const char *lname, fs_str_t *out);

/* Answers a request, exactly once. extra_headers is NULL or complete "Name: value\r\n" lines.
 * The body is copied. After this call req must not be touched. */
void fs_http_respond(fs_http_req_t *req, int status, const char *extra_headers,
                     const char *content_type, const char *body, size_t body_len);

const char *fs_http_reason(int status);

#endif
