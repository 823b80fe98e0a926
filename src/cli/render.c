/* Human-readable output of flashsale-cli (see cli.h). Scripts should use --json instead: this
 * layout may change. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char *fs__str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "-";
}

static long long fs__int(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static void fs__sku_table(json_t *skus)
{
    printf("%-24s %10s %10s %8s %8s %6s %12s\n", "SKU", "TOTAL", "AVAILABLE", "HELD", "SOLD",
           "LIMIT", "PRICE");
    size_t i;
    json_t *s;
    json_array_foreach(skus, i, s) {
        long long total = fs__int(s, "total"), avail = fs__int(s, "available");
        char bar[21];
        int filled = total > 0 ? (int)(20 * avail / total) : 0;
        for (int k = 0; k < 20; k++) bar[k] = k < filled ? '#' : '.';
        bar[20] = 0;
        long long price = fs__int(s, "price_cents");
        printf("%-24s %10lld %10lld %8lld %8lld %6lld %9lld.%02lld  %s\n", fs__str(s, "sku"), total,
               avail, fs__int(s, "held"), fs__int(s, "sold"), fs__int(s, "per_user_limit"),
               price / 100, price % 100, bar);
    }
}

void fs_cli_print_launch(json_t *l)
{
    printf("launch %s  \"%s\"  state: %s\n", fs__str(l, "launch"), fs__str(l, "name"),
           fs__str(l, "state"));
    printf("hold %llds  starts_at %s  ends_at %s\n", fs__int(l, "hold_seconds"),
           fs__str(l, "starts_at"), fs__str(l, "ends_at"));
    fs__sku_table(json_object_get(l, "skus"));
}

/* "state open -> paused" or "available 10 -> 15" for an audit entry. */
static void fs__change(json_t *e, char *out, size_t cap)
{
    json_t *b = json_object_get(e, "before"), *a = json_object_get(e, "after");
    const char *action = fs__str(e, "action");
    if (strcmp(action, "restock") == 0) {
        snprintf(out, cap, "delta %lld: total %lld -> %lld, available %lld -> %lld",
                 fs__int(json_object_get(e, "detail"), "delta"), fs__int(b, "total"),
                 fs__int(a, "total"), fs__int(b, "available"), fs__int(a, "available"));
    } else if (json_is_null(b)) {
        snprintf(out, cap, "created, state %s", fs__str(a, "state"));
    } else {
        snprintf(out, cap, "state %s -> %s", fs__str(b, "state"), fs__str(a, "state"));
    }
}

void fs_cli_print_audit(json_t *body)
{
    printf("%-24s %-16s %-9s %-10s %-16s %s\n", "AT", "WHO", "ROLE", "ACTION", "SKU", "CHANGE");
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(body, "entries"), i, e) {
        char change[200];
        fs__change(e, change, sizeof change);
        printf("%-24s %-16s %-9s %-10s %-16s %s\n", fs__str(e, "at"), fs__str(e, "who"),
               fs__str(e, "role"), fs__str(e, "action"), fs__str(e, "sku"), change);
    }
}

void fs_cli_print_orders(json_t *body)
{
    printf("%-24s %-24s %-20s %-20s %5s %12s %s\n", "CONFIRMED_AT", "ORDER", "SKU", "USER", "QTY",
           "PRICE", "PAYMENT_REF");
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(body, "orders"), i, o) {
        long long price = fs__int(o, "price_cents");
        printf("%-24s %-24s %-20s %-20s %5lld %9lld.%02lld %s\n", fs__str(o, "confirmed_at"),
               fs__str(o, "order_id"), fs__str(o, "sku"), fs__str(o, "user_id"), fs__int(o, "qty"),
               price / 100, price % 100, fs__str(o, "payment_ref"));
    }
}

static double fs__num(json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

void fs_cli_print_watch(json_t *st, int clear)
{
    if (clear) printf("\033[H\033[2J");
    json_t *cur = json_object_get(st, "current"), *w = json_object_get(st, "window");
    json_t *ps = json_object_get(w, "per_second");
    printf("%s  launch %s  \"%s\"  state: %s\n\n", fs__str(st, "now"), fs__str(cur, "launch"),
           fs__str(cur, "name"), fs__str(cur, "state"));
    fs__sku_table(json_object_get(cur, "skus"));
    printf("\nreservations/s (last %llds): %.1f total", fs__int(w, "seconds"), fs__num(ps, "total"));
    static const char *const outcomes[] = {"ok", "sold_out", "limit_exceeded", "launch_not_open",
                                           "not_found", "overloaded", "unavailable", "error",
                                           "rate_limited", "rejected", NULL};
    for (int i = 0; outcomes[i]; i++) {
        double v = fs__num(ps, outcomes[i]);
        if (v > 0) printf("  %s %.1f", outcomes[i], v);
    }
    printf("\n");
    json_t *p50 = json_object_get(w, "p50_ms"), *p99 = json_object_get(w, "p99_ms");
    if (json_is_number(p99))
        printf("latency p50 %.2f ms  p99 %.2f ms", json_number_value(p50), json_number_value(p99));
    else
        printf("latency -");
    printf("   rate-limited %.1f%%   overloaded %.1f%%   sold-out %.1f%%\n",
           100 * fs__num(w, "rate_limited_share"), 100 * fs__num(w, "overloaded_share"),
           100 * fs__num(w, "sold_out_share"));
    json_t *relay = json_object_get(st, "relay");
    if (json_is_object(relay))
        printf("relay: %lld orders read but not yet delivered, %lld not yet read\n",
               fs__int(relay, "pending"), fs__int(relay, "unread"));
    fflush(stdout);
}
