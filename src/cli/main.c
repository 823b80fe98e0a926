/* flashsale-cli: launch-day operator commands over the operator API (docs/operators.md).
 *
 *   flashsale-cli [options] COMMAND ARGS...
 *
 * Server and token come from --url/--token or FLASHSALE_URL/FLASHSALE_ADMIN_TOKEN; the token is
 * never printed. Every read command has --json (the server's document, one line). Destructive or
 * large actions ask for confirmation on a terminal and need --yes otherwise. Exit codes: cli.h. */
#include "cli.h"
#include "flashsale/version.h"
#include "common/shopper_token.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

typedef struct {
    const char *url, *token;
    int json, yes, timeout_ms;
    long count, interval_ms, iterations, ttl;
    const char *pos[8];
    int npos;
    fs_cli_t *cli;
} fs__opts_t;

static void fs__usage(FILE *f)
{
    fprintf(f,
            "usage: flashsale-cli [options] COMMAND [ARGS]\n"
            "\n"
            "Commands:\n"
            "  launch list                      every launch id\n"
            "  launch show L                    state and per-SKU counters\n"
            "  launch apply FILE [L]            create or update a launch from a JSON or INI document\n"
            "  launch open|pause|close L        change its state (close asks for confirmation)\n"
            "  restock L SKU +N|-N              add or remove units (removing asks for confirmation)\n"
            "  limits L SKU=N [SKU=N...]        set per-user limits (ALL=N for every SKU; lowering asks)\n"
            "  sign-shopper USER_ID [--ttl S]   print a shopper token (X-Shopper-Token) signed with\n"
            "                                   FLASHSALE_SHOPPER_SECRET; needs no server (default 3600 s)\n"
            "  orders L [SKU] [--count N]       newest orders from the order streams\n"
            "  watch L [--interval MS] [--iterations N]   live view, refreshed every second\n"
            "  audit L [--count N]              operator actions on the launch, newest first\n"
            "  pause-all                        pause every open launch (asks for confirmation)\n"
            "  whoami                           the name and role of your token\n"
            "\n"
            "Options:\n"
            "  --url URL       server, default $FLASHSALE_URL or http://127.0.0.1:8080\n"
            "  --token TOKEN   operator token, default $FLASHSALE_ADMIN_TOKEN (prefer the variable)\n"
            "  --json          print the server's JSON document (read commands and actions)\n"
            "  --yes           do not ask for confirmation\n"
            "  --timeout MS    per request, default 10000\n"
            "  --help, --version\n"
            "\n"
            "Exit codes: 0 ok, 1 refused by the server, 2 usage, 3 server unreachable, 4 unauthorized\n"
            "or forbidden, 5 not found, 6 conflict (409), 7 not confirmed, 8 unavailable (503).\n");
}

static int fs__usage_error(const char *msg)
{
    fprintf(stderr, "flashsale-cli: %s (see flashsale-cli --help)\n", msg);
    return FS_CLI_USAGE;
}

/* Asks on the terminal; without one, only --yes confirms. Returns 1 to go ahead. */
static int fs__confirm(fs__opts_t *o, const char *what)
{
    if (o->yes) return 1;
    if (!isatty(STDIN_FILENO)) {
        fprintf(stderr, "flashsale-cli: %s needs confirmation: run it on a terminal or pass --yes\n", what);
        return 0;
    }
    fprintf(stderr, "%s? Type yes to go ahead: ", what);
    char line[32];
    if (!fgets(line, sizeof line, stdin)) return 0;
    return strcmp(line, "yes\n") == 0 || strcmp(line, "y\n") == 0;
}

/* One call; prints the answer (--json: as is; else through print) and returns the exit code. */
static int fs__call_print(fs__opts_t *o, const char *method, const char *path, const char *body,
                          void (*print)(json_t *))
{
    json_t *doc;
    char *raw;
    int status = fs_cli_call(o->cli, method, path, body, &doc, &raw);
    if (status < 0) return FS_CLI_UNREACHABLE;
    int rc = FS_CLI_OK;
    if (status >= 200 && status < 300 && doc) {
        if (o->json) printf("%s\n", raw);
        else if (print) print(doc);
    } else {
        rc = fs_cli_fail(status, doc);
    }
    json_decref(doc);
    free(raw);
    return rc;
}

static int fs__id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 128) return 0;
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.~-") == n;
}

static void fs__print_state(json_t *l)
{
    printf("launch %s: %s\n", json_string_value(json_object_get(l, "launch")),
           json_string_value(json_object_get(l, "state")));
}

static void fs__print_list(json_t *b)
{
    size_t i;
    json_t *id;
    json_array_foreach(json_object_get(b, "launches"), i, id) printf("%s\n", json_string_value(id));
}

static void fs__print_restock(json_t *b)
{
    printf("%s/%s: total %lld available %lld held %lld sold %lld\n",
           json_string_value(json_object_get(b, "launch")), json_string_value(json_object_get(b, "sku")),
           (long long)json_integer_value(json_object_get(b, "total")),
           (long long)json_integer_value(json_object_get(b, "available")),
           (long long)json_integer_value(json_object_get(b, "held")),
           (long long)json_integer_value(json_object_get(b, "sold")));
}

static void fs__print_paused(json_t *b)
{
    size_t i;
    json_t *id;
    printf("paused %lld launch(es)\n", (long long)json_integer_value(json_object_get(b, "count")));
    json_array_foreach(json_object_get(b, "paused"), i, id) printf("  %s\n", json_string_value(id));
}

static void fs__print_whoami(json_t *b)
{
    printf("%s (%s)\n", json_string_value(json_object_get(b, "name")),
           json_string_value(json_object_get(b, "role")));
}

static int fs__launch(fs__opts_t *o)
{
    if (o->npos < 2) return fs__usage_error("launch needs a subcommand");
    const char *sub = o->pos[1];
    char path[512];
    if (strcmp(sub, "list") == 0)
        return fs__call_print(o, "GET", "/admin/v1/launches", NULL, fs__print_list);
    if (strcmp(sub, "apply") == 0) {
        if (o->npos < 3 || o->npos > 4) return fs__usage_error("usage: launch apply FILE [L]");
        char *id = NULL;
        json_t *doc = fs_cli_launch_doc(o->pos[2], &id);
        if (!doc) return FS_CLI_USAGE;
        if (o->npos == 4) {
            free(id);
            id = strdup(o->pos[3]);
        }
        int rc;
        if (!id || !fs__id_ok(id)) {
            rc = fs__usage_error("the launch id (\"launch\" in JSON, id in [launch], or L) is missing or invalid");
        } else {
            char *body = json_dumps(doc, JSON_COMPACT);
            snprintf(path, sizeof path, "/admin/v1/launches/%s", id);
            rc = fs__call_print(o, "PUT", path, body, fs_cli_print_launch);
            free(body);
        }
        free(id);
        json_decref(doc);
        return rc;
    }
    if (o->npos != 3) return fs__usage_error("usage: launch show|open|pause|close L");
    const char *l = o->pos[2];
    if (!fs__id_ok(l)) return fs__usage_error("invalid launch id");
    if (strcmp(sub, "show") == 0) {
        snprintf(path, sizeof path, "/admin/v1/launches/%s", l);
        return fs__call_print(o, "GET", path, NULL, fs_cli_print_launch);
    }
    if (strcmp(sub, "open") && strcmp(sub, "pause") && strcmp(sub, "close"))
        return fs__usage_error("unknown launch subcommand");
    if (strcmp(sub, "close") == 0) {
        char what[200];
        snprintf(what, sizeof what, "Close launch %s for good (a closed launch cannot reopen)", l);
        if (!fs__confirm(o, what)) return FS_CLI_DECLINED;
    }
    snprintf(path, sizeof path, "/admin/v1/launches/%s/%s", l, sub);
    return fs__call_print(o, "POST", path, NULL, fs__print_state);
}

static int fs__restock(fs__opts_t *o)
{
    if (o->npos != 4) return fs__usage_error("usage: restock L SKU +N|-N");
    const char *l = o->pos[1], *sku = o->pos[2];
    char *end;
    long long delta = strtoll(o->pos[3], &end, 10);
    if (!fs__id_ok(l) || !fs__id_ok(sku) || *end || end == o->pos[3] || delta == 0)
        return fs__usage_error("usage: restock L SKU +N|-N (N a non-zero integer)");
    if (delta < 0 || delta >= 10000) {
        char what[400];
        snprintf(what, sizeof what, "%s %lld units %s %s/%s", delta < 0 ? "Remove" : "Add",
                 delta < 0 ? -delta : delta, delta < 0 ? "from" : "to", l, sku);
        if (!fs__confirm(o, what)) return FS_CLI_DECLINED;
    }
    char path[512], body[64];
    snprintf(path, sizeof path, "/admin/v1/launches/%s/skus/%s/restock", l, sku);
    snprintf(body, sizeof body, "{\"delta\":%lld}", delta);
    return fs__call_print(o, "POST", path, body, fs__print_restock);
}

/* limits L SKU=N...: reads the launch and PUTs it back with the new per-user limits, listing only
 * the SKUs that change (the others stay as they are). */
static int fs__limits(fs__opts_t *o)
{
    if (o->npos < 3) return fs__usage_error("usage: limits L SKU=N [SKU=N...] (or ALL=N)");
    const char *l = o->pos[1];
    if (!fs__id_ok(l)) return fs__usage_error("invalid launch id");
    char path[512];
    snprintf(path, sizeof path, "/admin/v1/launches/%s", l);
    json_t *cur;
    int status = fs_cli_call(o->cli, "GET", path, NULL, &cur, NULL);
    if (status < 0) return FS_CLI_UNREACHABLE;
    if (status != 200 || !cur) {
        int rc = fs_cli_fail(status, cur);
        json_decref(cur);
        return rc;
    }
    json_t *skus = json_array();
    int lowered = 0, rc = FS_CLI_OK;
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(cur, "skus"), i, s) {
        const char *id = json_string_value(json_object_get(s, "sku"));
        long long limit = -1;
        for (int k = 2; k < o->npos; k++) {
            const char *eq = strchr(o->pos[k], '=');
            if (!eq) continue;
            size_t n = (size_t)(eq - o->pos[k]);
            if ((n == 3 && strncmp(o->pos[k], "ALL", 3) == 0) ||
                (n == strlen(id) && strncmp(o->pos[k], id, n) == 0))
                limit = strtoll(eq + 1, NULL, 10);
        }
        if (limit < 0) continue;
        long long old = (long long)json_integer_value(json_object_get(s, "per_user_limit"));
        if (limit < old) lowered = 1;
        /* no "stock": an existing SKU keeps its own (restocks included) */
        json_array_append_new(skus, json_pack("{sO sI sO}", "sku", json_object_get(s, "sku"),
                                              "per_user_limit", (json_int_t)limit, "price_cents",
                                              json_object_get(s, "price_cents")));
    }
    for (int k = 2; k < o->npos && rc == FS_CLI_OK; k++) {
        const char *eq = strchr(o->pos[k], '=');
        char *end;
        long long v = eq ? strtoll(eq + 1, &end, 10) : 0;
        if (!eq || eq == o->pos[k] || !eq[1] || *end || v < 1)
            rc = fs__usage_error("limits are SKU=N with N >= 1 (to stop sales, pause the launch)");
    }
    if (rc == FS_CLI_OK && json_array_size(skus) == 0) rc = fs__usage_error("no SKU of the launch matches");
    if (rc == FS_CLI_OK && lowered) {
        char what[300];
        snprintf(what, sizeof what, "Lower per-user limits of %s", l);
        if (!fs__confirm(o, what)) rc = FS_CLI_DECLINED;
    }
    if (rc == FS_CLI_OK) {
        json_t *doc = json_pack("{sO sO sO sO sO}", "name", json_object_get(cur, "name"),
                                "hold_seconds", json_object_get(cur, "hold_seconds"), "starts_at",
                                json_object_get(cur, "starts_at"), "ends_at",
                                json_object_get(cur, "ends_at"), "skus", skus);
        char *body = json_dumps(doc, JSON_COMPACT);
        rc = fs__call_print(o, "PUT", path, body, fs_cli_print_launch);
        free(body);
        json_decref(doc);
    }
    json_decref(skus);
    json_decref(cur);
    return rc;
}

static int fs__orders_or_audit(fs__opts_t *o, int audit)
{
    if (o->npos < 2 || o->npos > (audit ? 2 : 3))
        return fs__usage_error(audit ? "usage: audit L [--count N]" : "usage: orders L [SKU] [--count N]");
    const char *l = o->pos[1];
    if (!fs__id_ok(l) || (o->npos == 3 && !fs__id_ok(o->pos[2])))
        return fs__usage_error("invalid launch or SKU id");
    char path[512];
    int n = snprintf(path, sizeof path, "/admin/v1/launches/%s/%s?count=%ld", l,
                     audit ? "audit" : "orders", o->count > 0 ? o->count : 20);
    if (o->npos == 3) snprintf(path + n, sizeof path - (size_t)n, "&sku=%s", o->pos[2]);
    return fs__call_print(o, "GET", path, NULL, audit ? fs_cli_print_audit : fs_cli_print_orders);
}

static int fs__watch(fs__opts_t *o)
{
    if (o->npos != 2 || !fs__id_ok(o->pos[1])) return fs__usage_error("usage: watch L");
    char path[512];
    snprintf(path, sizeof path, "/admin/v1/launches/%s/stats?seconds=10&window=5", o->pos[1]);
    int clear = !o->json && isatty(STDOUT_FILENO);
    for (long i = 0; o->iterations <= 0 || i < o->iterations; i++) {
        if (i) usleep((useconds_t)o->interval_ms * 1000);
        json_t *doc;
        char *raw;
        int status = fs_cli_call(o->cli, "GET", path, NULL, &doc, &raw);
        if (status < 0) return FS_CLI_UNREACHABLE;
        if (status != 200 || !doc) {
            int rc = fs_cli_fail(status, doc);
            json_decref(doc);
            free(raw);
            return rc;
        }
        if (o->json) {
            printf("%s\n", raw);
            fflush(stdout);
        } else {
            fs_cli_print_watch(doc, clear);
        }
        json_decref(doc);
        free(raw);
    }
    return FS_CLI_OK;
}

static int fs__run(fs__opts_t *o)
{
    const char *cmd = o->pos[0];
    if (strcmp(cmd, "launch") == 0) return fs__launch(o);
    if (strcmp(cmd, "restock") == 0) return fs__restock(o);
    if (strcmp(cmd, "limits") == 0) return fs__limits(o);
    if (strcmp(cmd, "orders") == 0) return fs__orders_or_audit(o, 0);
    if (strcmp(cmd, "audit") == 0) return fs__orders_or_audit(o, 1);
    if (strcmp(cmd, "watch") == 0) return fs__watch(o);
    if (strcmp(cmd, "whoami") == 0)
        return o->npos == 1 ? fs__call_print(o, "GET", "/admin/v1/whoami", NULL, fs__print_whoami)
                            : fs__usage_error("usage: whoami");
    if (strcmp(cmd, "pause-all") == 0) {
        if (o->npos != 1) return fs__usage_error("usage: pause-all");
        if (!fs__confirm(o, "Pause every open launch")) return FS_CLI_DECLINED;
        return fs__call_print(o, "POST", "/admin/v1/pause-all", NULL, fs__print_paused);
    }
    return fs__usage_error("unknown command");
}

/* sign-shopper USER_ID [--ttl SECONDS]: a shopper token (X-Shopper-Token, docs/abuse.md) signed
 * with FLASHSALE_SHOPPER_SECRET, for storefronts that let browsers call the server directly. */
static int fs__sign_shopper(fs__opts_t *o)
{
    if (o->npos != 2) return fs__usage_error("usage: sign-shopper USER_ID [--ttl SECONDS]");
    const char *secret = getenv("FLASHSALE_SHOPPER_SECRET");
    if (!secret || strlen(secret) < 16)
        return fs__usage_error("FLASHSALE_SHOPPER_SECRET must hold the server's shopper secret "
                               "(16 bytes or more)");
    long ttl = o->ttl > 0 ? o->ttl : 3600;
    if (ttl > 31536000) return fs__usage_error("--ttl is at most 31536000 seconds (a year)");
    char tok[FS_SHOPPER_TOKEN_MAX + 1];
    const char *user = o->pos[1];
    int n = fs_shopper_token_sign(secret, strlen(secret), user, strlen(user),
                                  (int64_t)time(NULL) + ttl, tok);
    if (n < 0) return fs__usage_error("USER_ID must be 1 to 128 bytes without control characters");
    if (o->json) {
        json_t *doc = json_pack("{ss ss sI}", "user_id", user, "token", tok, "expires_in",
                                (json_int_t)ttl);
        char *text = json_dumps(doc, JSON_COMPACT);
        printf("%s\n", text);
        free(text);
        json_decref(doc);
    } else {
        printf("%s\n", tok);
    }
    return FS_CLI_OK;
}

static int fs__long_opt(const char *v, long *out)
{
    char *end;
    if (!v) return -1;
    *out = strtol(v, &end, 10);
    return *end || end == v || *out < 1 ? -1 : 0;
}

int main(int argc, char **argv)
{
    fs__opts_t o = {.url = getenv("FLASHSALE_URL"), .token = getenv("FLASHSALE_ADMIN_TOKEN"),
                    .timeout_ms = 10000, .interval_ms = 1000};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        long v;
        /* "-5" is a restock delta, not an option */
        if (a[0] != '-' || (a[1] >= '0' && a[1] <= '9') || a[1] == 0) {
            if (o.npos == (int)(sizeof o.pos / sizeof o.pos[0])) return fs__usage_error("too many arguments");
            o.pos[o.npos++] = a;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fs__usage(stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("flashsale-cli %s\n", FS_VERSION);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            o.json = 1;
        } else if (strcmp(a, "--yes") == 0 || strcmp(a, "-y") == 0) {
            o.yes = 1;
        } else if (strcmp(a, "--url") == 0 && next) {
            o.url = next, i++;
        } else if (strcmp(a, "--token") == 0 && next) {
            o.token = next, i++;
        } else if (strcmp(a, "--timeout") == 0 && !fs__long_opt(next, &v)) {
            o.timeout_ms = (int)v, i++;
        } else if (strcmp(a, "--count") == 0 && !fs__long_opt(next, &v)) {
            o.count = v, i++;
        } else if (strcmp(a, "--interval") == 0 && !fs__long_opt(next, &v)) {
            o.interval_ms = v, i++;
        } else if (strcmp(a, "--iterations") == 0 && !fs__long_opt(next, &v)) {
            o.iterations = v, i++;
        } else if (strcmp(a, "--ttl") == 0 && !fs__long_opt(next, &v)) {
            o.ttl = v, i++;
        } else {
            fprintf(stderr, "flashsale-cli: unknown option or missing value: %s\n", a);
            return FS_CLI_USAGE;
        }
    }
    if (o.npos == 0) {
        fs__usage(stderr);
        return FS_CLI_USAGE;
    }
    if (strcmp(o.pos[0], "sign-shopper") == 0) return fs__sign_shopper(&o); /* needs no server */
    if (!o.url || !*o.url) o.url = "http://127.0.0.1:8080";
    if (!o.token || !*o.token)
        return fs__usage_error("no operator token: set FLASHSALE_ADMIN_TOKEN or pass --token");
    o.cli = fs_cli_open(o.url, o.token, o.timeout_ms);
    if (!o.cli) return FS_CLI_USAGE;
    int rc = fs__run(&o);
    fs_cli_close(o.cli);
    return rc;
}
