/* Blocking calls over the async HTTP client (see cli.h): each call runs the loop until its
 * answer (or failure) arrives. One keep-alive connection for every call of a run. */
#include "cli.h"
#include "common/log.h"
#include "flashsale/error.h"
#include "flashsale/http_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct fs_cli {
    uv_loop_t loop;
    fs_http_client_t *http;
    char headers[1200]; /* Authorization line: never printed */
};

fs_cli_t *fs_cli_open(const char *url, const char *token, int timeout_ms)
{
    char host[256], path[2048];
    int port;
    if (fs_http_url_parse(url, host, &port, path)) {
        fprintf(stderr, "flashsale-cli: the server URL must look like http://host:port\n");
        return NULL;
    }
    fs_http_client_opts_t o = {.timeout_ms = timeout_ms};
    if (fs_http_resolve(host, port, &o.addr)) {
        fprintf(stderr, "flashsale-cli: cannot resolve %s\n", host);
        return NULL;
    }
    if (strlen(token) > 1024 || strpbrk(token, "\r\n")) {
        fprintf(stderr, "flashsale-cli: the token is malformed\n");
        return NULL;
    }
    fs_cli_t *cli = fs_xcalloc(1, sizeof *cli);
    uv_loop_init(&cli->loop);
    fs_http_client_new(&cli->loop, &o, &cli->http);
    snprintf(cli->headers, sizeof cli->headers,
             "Authorization: Bearer %s\r\nContent-Type: application/json\r\nAccept: application/json\r\n",
             token);
    return cli;
}

void fs_cli_close(fs_cli_t *cli)
{
    if (!cli) return;
    fs_http_client_close(cli->http);
    uv_run(&cli->loop, UV_RUN_DEFAULT);
    uv_loop_close(&cli->loop);
    memset(cli->headers, 0, sizeof cli->headers);
    free(cli);
}

typedef struct {
    int done, err, status;
    char *body;
    size_t len;
} fs__result_t;

static void fs__on_answer(void *arg, int err, const fs_http_response_t *resp)
{
    fs__result_t *r = arg;
    r->done = 1;
    r->err = err;
    if (err) return;
    r->status = resp->status;
    r->body = fs_xstrndup(resp->body, resp->body_len);
    r->len = resp->body_len;
}

int fs_cli_call(fs_cli_t *cli, const char *method, const char *path, const char *body,
                json_t **out, char **raw)
{
    fs__result_t r = {0};
    *out = NULL;
    if (raw) *raw = NULL;
    fs_http_client_request(cli->http, method, path, cli->headers, body, body ? strlen(body) : 0,
                           fs__on_answer, &r);
    while (!r.done) uv_run(&cli->loop, UV_RUN_ONCE);
    if (r.err) {
        fprintf(stderr, "flashsale-cli: no answer from the server: %s\n",
                r.err == FS_ETIMEDOUT ? "timed out"
                : r.err == FS_EIO     ? "cannot connect, or the connection failed"
                                      : "malformed answer");
        return -1;
    }
    json_error_t jerr;
    *out = json_loadb(r.body, r.len, 0, &jerr);
    if (raw) *raw = r.body;
    else free(r.body);
    return r.status;
}

int fs_cli_fail(int status, json_t *body)
{
    const char *code = json_string_value(json_object_get(body, "error"));
    const char *msg = json_string_value(json_object_get(body, "message"));
    fprintf(stderr, "flashsale-cli: %s: %s (HTTP %d)\n", code ? code : "error",
            msg ? msg : "unexpected answer", status);
    switch (status) {
    case 401:
    case 403: return FS_CLI_AUTH;
    case 404: return FS_CLI_NOT_FOUND;
    case 409: return FS_CLI_CONFLICT;
    case 503: return FS_CLI_UNAVAILABLE;
    default: return FS_CLI_ERROR;
    }
}
