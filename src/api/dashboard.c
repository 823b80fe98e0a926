/* The operator dashboard at /admin/: one static page (HTML, CSS, plain JS from
 * src/api/dashboard/, embedded at build time by cmake/embed.cmake). It needs no network beyond
 * this server: it asks for an operator token once (kept in sessionStorage) and then reads
 * /admin/v1/... every second. The page itself is public; every API call it makes is not. */
#include "api.h"
#include "../common/timeutil.h"

#include <string.h>

extern const char fs_dashboard_html[], fs_dashboard_js[], fs_dashboard_css[];
extern const size_t fs_dashboard_html_len, fs_dashboard_js_len, fs_dashboard_css_len;

/* Same-origin only: no inline script, no framing, nothing from elsewhere. */
#define FS__STATIC_HEADERS                                                                         \
    "Cache-Control: no-cache\r\n"                                                                  \
    "X-Content-Type-Options: nosniff\r\n"                                                          \
    "X-Frame-Options: DENY\r\n"                                                                    \
    "Referrer-Policy: no-referrer\r\n"                                                             \
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "          \
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "             \
    "frame-ancestors 'none'\r\n"

void fs_api_dashboard(fs_api_ctx_t *c, int route)
{
    fs_http_req_t *req = c->req;
    const char *body = "", *type = "text/plain";
    size_t len = 0;
    int status = 200;
    const char *headers = FS__STATIC_HEADERS;
    switch (route) {
    case FS_ROUTE_DASHBOARD:
        body = fs_dashboard_html, len = fs_dashboard_html_len, type = "text/html; charset=utf-8";
        break;
    case FS_ROUTE_DASHBOARD_JS:
        body = fs_dashboard_js, len = fs_dashboard_js_len, type = "text/javascript; charset=utf-8";
        break;
    case FS_ROUTE_DASHBOARD_CSS:
        body = fs_dashboard_css, len = fs_dashboard_css_len, type = "text/css; charset=utf-8";
        break;
    case FS_ROUTE_DASHBOARD_REDIRECT: /* the page's relative links need the trailing slash */
        status = 308;
        headers = "Location: /admin/\r\n";
        break;
    default:
        fs_api_error(c, 404, "not_found", "no such route");
        return;
    }
    fs_metrics_request(c->api->metrics, route, status, fs_mono_ns() - req->start_ns);
    fs_http_respond(req, status, headers, type, body, len);
    fs_api_ctx_put(c);
}
