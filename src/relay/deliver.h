/* The delivery client: HTTP/1.1 POSTs to one fulfillment endpoint over TLS (OpenSSL, see common/tls.h)
 * or, for loopback targets only, plain TCP; answers parsed by llhttp.
 *
 * Up to max_conns requests are in flight at once, one per connection (no pipelining: an answer
 * is tied to its request without doubt). Connections are kept alive and reused, most recently
 * used first, and closed after idle_ms without use. A request that fails on a reused connection
 * before any byte of its answer arrived (the peer had closed the idle connection) is sent once
 * more on a new connection; every other failure is reported to the caller, who decides about
 * retries. A TLS failure is reported as such and nothing is ever sent without TLS to an https
 * target; a plain http target whose address does not resolve to loopback is refused.
 *
 * Threads: one client belongs to one loop. Ownership: fs_deliver_new allocates, fs_deliver_close
 * frees once every handle is closed (the loop must run for that). */
#ifndef FS_RELAY_DELIVER_H
#define FS_RELAY_DELIVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* A parsed target URL. */
typedef struct {
    int tls;                 /* https */
    char host[256];          /* without IPv6 brackets */
    int host_is_ip;          /* an IPv4/IPv6 literal */
    int port;
    char path[2048];         /* path and query, "/" when absent */
    char host_header[300];   /* value of the Host header */
} fs_relay_target_t;

/* Parses "https://host[:port][/path]" or "http://host[:port][/path]". Plain http is accepted only
 * for a loopback host (127.0.0.0/8, ::1 or "localhost"). Returns 0 or FS_EINVAL with a message
 * (which never repeats userinfo) in err. */
int fs_relay_target_parse(const char *url, fs_relay_target_t *t, char *err, size_t errcap);

typedef struct fs_deliver fs_deliver_t;

typedef struct {
    int err;                 /* 0: an HTTP answer arrived (status is set); else FS_EIO (network),
                                FS_ETIMEDOUT or FS_EPROTO (malformed answer, TLS failure) */
    int tls_failure;         /* the TLS handshake or the certificate check failed */
    int status;
    int64_t retry_after_ms;  /* Retry-After (seconds or HTTP date) in ms; -1 when absent */
    const char *body;        /* the first bytes (at most FS_DELIVER_BODY_KEEP) of the answer */
    size_t body_len;
    const char *error;       /* a readable reason when err != 0 ("" otherwise) */
    uint64_t duration_ns;    /* from fs_deliver_post to the outcome */
    int reused;              /* the answer came over a kept-alive connection */
} fs_deliver_result_t;

#define FS_DELIVER_BODY_KEEP 512

/* Fires exactly once per request; the result is valid only during the call. */
typedef void (*fs_deliver_cb)(void *arg, const fs_deliver_result_t *r);

typedef struct {
    const fs_relay_target_t *target; /* copied */
    const char *ca_file;             /* NULL or "" for the system store */
    const char *user_agent;
    int timeout_ms;                  /* per request, resolve + connect + TLS + answer */
    int max_conns;
    int idle_ms;
} fs_deliver_opts_t;

typedef struct {
    uint64_t connects, reuses, tls_handshakes, tls_failures, stale_retries;
} fs_deliver_stats_t;

/* Returns 0, or FS_EINVAL with a message in err (TLS context or CA file problems). */
int fs_deliver_new(uv_loop_t *loop, const fs_deliver_opts_t *o, fs_deliver_t **out, char *err,
                   size_t errcap);

/* Sends POST <target path> with body, Content-Type application/json and extra_headers (NULL or
 * complete "Name: value\r\n" lines). Returns 0 (cb fires exactly once, never from inside this
 * call) or FS_ENOMEM when max_conns requests are already in flight (nothing is sent). */
int fs_deliver_post(fs_deliver_t *d, const char *extra_headers, const char *body, size_t len,
                    fs_deliver_cb cb, void *arg);

size_t fs_deliver_in_flight(const fs_deliver_t *d);
size_t fs_deliver_open_connections(const fs_deliver_t *d);
fs_deliver_stats_t fs_deliver_stats(const fs_deliver_t *d);

/* Closes every connection; requests in flight complete with FS_EIO ("shutting down") before this
 * returns. The client frees itself once its handles are closed; do not use it afterwards. */
void fs_deliver_close(fs_deliver_t *d);

#endif
