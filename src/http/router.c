/* Route matching (see router.h). */
#include "router.h"

#include <llhttp.h>
#include <stdio.h>
#include <string.h>

/* Matches one pattern against path; fills params. Returns 1 on match. */
static int fs__match(const char *pat, fs_str_t path, fs_str_t *params)
{
    size_t pi = 0, np = 0;
    const char *p = pat;
    while (*p) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            size_t start = pi;
            while (pi < path.n && path.p[pi] != '/') pi++;
            if (pi == start || np >= FS_HTTP_MAX_PARAMS) return 0;
            params[np].p = path.p + start;
            params[np].n = pi - start;
            np++;
            p = close + 1;
        } else {
            if (pi >= path.n || path.p[pi] != *p) return 0;
            pi++;
            p++;
        }
    }
    return pi == path.n;
}

int fs_router_match(const fs_route_t *routes, size_t n, int method, fs_str_t path,
                    fs_str_t *params, char *allow, size_t allowcap)
{
    int path_matched = 0;
    size_t al = 0;
    if (allow && allowcap) allow[0] = 0;
    /* Routes of the request's method first (one integer compare skips the others); only a
     * request that none matches pays for the second pass, which finds the Allow list. */
    for (size_t i = 0; i < n; i++) {
        if (routes[i].method == method && fs__match(routes[i].pattern, path, params)) return (int)i;
    }
    for (size_t i = 0; i < n; i++) {
        fs_str_t tmp[FS_HTTP_MAX_PARAMS];
        if (!fs__match(routes[i].pattern, path, tmp)) continue;
        path_matched = 1;
        if (allow) {
            const char *m = llhttp_method_name((llhttp_method_t)routes[i].method);
            size_t ml = strlen(m);
            if (al + ml + 3 < allowcap) {
                if (al) {
                    memcpy(allow + al, ", ", 2);
                    al += 2;
                }
                memcpy(allow + al, m, ml);
                al += ml;
                allow[al] = 0;
            }
        }
    }
    return path_matched ? FS_ROUTE_BAD_METHOD : FS_ROUTE_NOT_FOUND;
}

int fs_router_refusal(int route, const char *allow, fs_buf_t *out, char *hdr, size_t hdrcap)
{
    hdr[0] = 0;
    if (route == FS_ROUTE_BAD_METHOD) {
        snprintf(hdr, hdrcap, "Allow: %s\r\n", allow);
        fs_json_error(out, "method_not_allowed", "method not allowed on this route");
        return 405;
    }
    fs_json_error(out, "not_found", "no such route");
    return 404;
}
