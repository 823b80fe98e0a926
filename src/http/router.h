/* Route matching: method + path pattern with {param} segments. Knows nothing of handlers. */
#ifndef FS_ROUTER_H
#define FS_ROUTER_H

#include "http.h"
#include "../common/buf.h"

typedef struct {
    int method;          /* llhttp_method_t */
    const char *pattern; /* e.g. "/v1/launches/{launch}/reservations" */
} fs_route_t;

enum { FS_ROUTE_NOT_FOUND = -1, FS_ROUTE_BAD_METHOD = -2 };

/* Returns the index of the route matching method and path, filling params (at most
 * FS_HTTP_MAX_PARAMS, in order of appearance); FS_ROUTE_BAD_METHOD when the path matches some
 * route but not with this method (then *allow lists the methods, e.g. "GET, PUT", when allow is not
 * NULL); FS_ROUTE_NOT_FOUND otherwise. A {param} matches one non-empty segment. */
int fs_router_match(const fs_route_t *routes, size_t n, int method, fs_str_t path,
                    fs_str_t *params, char *allow, size_t allowcap);

/* The answer to a request that matched no route (route is FS_ROUTE_NOT_FOUND or
 * FS_ROUTE_BAD_METHOD, allow as fs_router_match filled it): writes the error document into out and,
 * for 405, the Allow header line into hdr (else hdr is ""); returns the status, 404 or 405. */
int fs_router_refusal(int route, const char *allow, fs_buf_t *out, char *hdr, size_t hdrcap);

#endif
