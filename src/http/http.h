/* The HTTP/1.1 server: listeners and connections on a libuv loop, requests parsed by llhttp.
 *
 * It knows nothing of flash sales or Redis: it hands each complete request to one callback and
 * writes the response the handler gives back, once, possibly later (asynchronously). Requests of
 * one connection are handled one at a time, in order, so pipelined requests are answered in order;
 * while a request is being handled, the connection is not read (backpressure).
 *
 * Limits: request line + headers over max_header_bytes → 431, body over max_body_bytes → 413,
 * malformed HTTP → 400; all three close the connection. Deadlines, each fixed when it starts (never
 * pushed back by a read): a keep-alive connection idle for idle_timeout_ms is closed; a request
 * whose head has not fully arrived header_timeout_ms after its first byte, or whose body has not
 * body_timeout_ms after that first byte, gets 408 and the connection is closed; a client that
 * stops reading its answers is closed after idle_timeout_ms. Connections over the process-wide
 * limits (fs_http_limits_t: overall, per client address) are accepted and closed at once. */
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
typedef struct fs_http_limits fs_http_limits_t;

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
    int header_timeout_ms;  /* 0: idle_timeout_ms */
    int body_timeout_ms;    /* 0: the larger of header_timeout_ms and idle_timeout_ms */
    int drain_grace_ms;     /* fs_http_server_drain keeps idle connections open this long (0: closes
                               them at once) */
    size_t max_header_bytes;
    size_t max_body_bytes;
    int reuseport;        /* set SO_REUSEPORT before binding (several loops, one port) */
    fs_http_on_request on_request;
    void *user;
    _Atomic uint64_t *open_gauge; /* optional: kept equal to the number of open connections */
    const char *trusted_proxies;  /* optional: comma-separated IPs/CIDRs whose X-Forwarded-For
                                   * is believed (fs_http_req_client_addr); NULL or "" for none */
    fs_http_limits_t *limits;     /* optional, shared by the servers of a process; outlives them */
    _Atomic uint64_t *rejected_counter; /* optional: connections closed at once over the limits */
} fs_http_server_opts_t;

/* Binds and listens. On failure returns a negative code and writes a message into err (for
 * example "address already in use"). The server belongs to the loop; free it with
 * fs_http_server_close. */
int fs_http_server_start(fs_http_server_t **out, uv_loop_t *loop, const fs_http_server_opts_t *o,
                         char *err, size_t errcap);
/* Graceful stop: closes the listener; closes every busy connection after its current response,
 * and each idle one after drain_grace_ms, or after the answer to a request it brings meanwhile
 * (a client that sends on a kept-alive connection just as the server stops gets an answer with
 * Connection: close, not a closed connection). `done` fires (once) when no connection is left. */
void fs_http_server_drain(fs_http_server_t *s, void (*done)(void *arg), void *arg);
/* Closes every connection and the listener at once; frees the server once all handles are closed
 * (the loop must run to let that happen). Requests still in flight are answered into the void. */
void fs_http_server_close(fs_http_server_t *s);
size_t fs_http_server_connections(const fs_http_server_t *s);

/* 1 once the server of req's connection is draining (stopping). */
int fs_http_req_draining(const fs_http_req_t *req);

/* A request header by lower-case name; returns 1 and sets *out when present. */
int fs_http_req_header(const fs_http_req_t *req, const char *lname, fs_str_t *out);

/* Answers a request, exactly once. extra_headers is NULL or complete "Name: value\r\n" lines.
 * The body is copied. After this call req must not be touched. */
void fs_http_respond(fs_http_req_t *req, int status, const char *extra_headers,
                     const char *content_type, const char *body, size_t body_len);

const char *fs_http_reason(int status);

/* ---- connection limits (conn_limits.c) ---- */

/* Limits on open connections shared by every server (event loop) of a process: at most
 * max_connections in all and max_per_addr from one socket peer address. Thread-safe. Free it after
 * every server using it is gone. */
fs_http_limits_t *fs_http_limits_new(size_t max_connections, size_t max_per_addr);
void fs_http_limits_free(fs_http_limits_t *l);
/* Counts a new connection from addr (16 bytes): 0 when admitted (fs_http_limits_leave must follow
 * when it closes), 1 when over the overall limit, 2 when over the per-address limit. */
int fs_http_limits_enter(fs_http_limits_t *l, const uint8_t addr[16]);
void fs_http_limits_leave(fs_http_limits_t *l, const uint8_t addr[16]);
/* Open connections counted: in all (addr NULL) or from addr. */
size_t fs_http_limits_open(fs_http_limits_t *l, const uint8_t *addr);

/* ---- client addresses (client_addr.c) ---- */

/* Longest text form of an address (INET6_ADDRSTRLEN), NUL included. */
#define FS_HTTP_ADDR_MAX 46

/* The client's address as text ("127.0.0.1", "::1"): the socket peer (read once at accept), or,
 * when the peer is one of the trusted proxies, the right-most X-Forwarded-For entry that is not a
 * trusted proxy itself (the left-most entry if all are; the peer if the header is missing or
 * malformed). Valid as long as req; computed at most once per request, and only for a trusted
 * peer does it look at headers. */
const char *fs_http_req_client_addr(const fs_http_req_t *req);

/* An address prefix: 16 bytes (IPv4 as ::ffff:a.b.c.d, its prefix length then 96 + n). */
typedef struct {
    uint8_t addr[16];
    uint8_t bits;
} fs_http_cidr_t;

/* Parses "10.0.0.1, 10.1.0.0/16, ::1, fd00::/8". On success *out (malloc'd, caller frees; NULL
 * when empty) and *n are set and 0 returned; otherwise FS_EINVAL with a message naming the entry. */
int fs_http_cidrs_parse(const char *csv, fs_http_cidr_t **out, size_t *n, char *err, size_t errcap);
/* 1 if addr (16 bytes) is inside one of the n prefixes. */
int fs_http_cidrs_match(const fs_http_cidr_t *v, size_t n, const uint8_t addr[16]);
/* An IPv4 or IPv6 address as text into 16 bytes; also accepts "[v6]", "[v6]:port" and
 * "a.b.c.d:port". Returns 0 or FS_EINVAL. */
int fs_http_addr_parse(const char *s, size_t n, uint8_t out[16]);
void fs_http_addr_text(const uint8_t addr[16], char out[FS_HTTP_ADDR_MAX]);
/* Walks one X-Forwarded-For value right to left. Returns 1 with *out set to the first entry that
 * is not in trusted; 0 when every entry is trusted (*out is then the left-most one); FS_EINVAL
 * when an entry is not an address or the value has none (*out unspecified). */
int fs_http_xff_client(const char *xff, size_t n, const fs_http_cidr_t *trusted, size_t ntrusted,
                       uint8_t out[16]);

#endif
