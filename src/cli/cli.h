/* flashsale-cli internals: the blocking call wrapper over the async HTTP client (client.c),
 * launch documents in JSON or INI (launch_doc.c) and human-readable output (render.c). */
#ifndef FS_CLI_H
#define FS_CLI_H

#include <jansson.h>
#include <stddef.h>

/* Exit codes (stable; docs/operators.md). */
enum {
    FS_CLI_OK = 0,
    FS_CLI_ERROR = 1,        /* the server refused for another reason (400, 500, ...) */
    FS_CLI_USAGE = 2,        /* bad command line or unreadable document */
    FS_CLI_UNREACHABLE = 3,  /* no answer: connection refused, timeout, malformed answer */
    FS_CLI_AUTH = 4,         /* 401 unauthorized or 403 forbidden */
    FS_CLI_NOT_FOUND = 5,    /* 404 */
    FS_CLI_CONFLICT = 6,     /* 409: invalid_transition, use_restock, insufficient_available */
    FS_CLI_DECLINED = 7,     /* a confirmation was declined, or needed without a terminal */
    FS_CLI_UNAVAILABLE = 8,  /* 503: retry later */
};

typedef struct fs_cli fs_cli_t;

/* Opens a client for url ("http://host:port") with a bearer token. Returns NULL and prints why. */
fs_cli_t *fs_cli_open(const char *url, const char *token, int timeout_ms);
void fs_cli_close(fs_cli_t *cli);

/* One request, run to completion. On an answer returns its HTTP status and sets *body (parsed
 * JSON, or NULL if the body was not JSON; the caller decrefs) and, if raw is not NULL, *raw (a
 * malloc'd NUL-terminated copy of the body). On no answer prints why and returns -1. */
int fs_cli_call(fs_cli_t *cli, const char *method, const char *path, const char *body,
                json_t **out, char **raw);

/* Maps an HTTP status to an exit code and prints the server's error (code and message) on stderr. */
int fs_cli_fail(int status, json_t *body);

/* Reads a launch document (JSON, or INI when the file ends in .ini or does not start with '{')
 * into the PUT body; *launch gets the id from the document (NULL if it has none; malloc'd).
 * Returns NULL and prints why on failure. */
json_t *fs_cli_launch_doc(const char *path, char **launch);

/* Human-readable output of server documents on stdout. */
void fs_cli_print_launch(json_t *launch);
void fs_cli_print_audit(json_t *body);
void fs_cli_print_orders(json_t *body);
/* A `watch` frame: state, per-SKU counters, reservations per second by outcome, latency. */
void fs_cli_print_watch(json_t *stats, int clear);

#endif
