/* Campaign file parser (see campaign.h). INI syntax is Debian's libinih; we read the file through
 * ini_parse_stream with our own line reader so that every setting knows its line number, and
 * checks that span several keys (after the whole file is read) can still point at a line. */
#include "campaign.h"
#include "common/ids.h"
#include "common/log.h"
#include "flashsale/error.h"

#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct {
    fs_campaign_t *c;
    const char *name;          /* file name for messages */
    int line;                  /* line being parsed (counted by the reader) */
    int section_line;          /* line of the latest [section] header */
    char msg[400];
    /* string source (fs_campaign_parse) or FILE (fs_campaign_load) */
    const char *text;
    FILE *f;
    /* where some settings were given, for cross-field messages */
    int line_duration, line_confirm, line_think, line_qty, line_id;
    int have_launch_id, have_shoppers;
} fs__ctx_t;

static char *fs__reader(char *buf, int size, void *stream)
{
    fs__ctx_t *x = stream;
    char *r;
    if (x->f) {
        r = fgets(buf, size, x->f);
    } else {
        if (!*x->text) return NULL;
        size_t n = strcspn(x->text, "\n");
        size_t take = n + (x->text[n] == '\n');
        if (take > (size_t)size - 1) take = (size_t)size - 1;
        memcpy(buf, x->text, take);
        buf[take] = 0;
        x->text += take;
        r = buf;
    }
    if (r) {
        x->line++;
        const char *p = r;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '[') x->section_line = x->line;
    }
    return r;
}

__attribute__((format(printf, 4, 5))) static int fs__fail(fs__ctx_t *x, const char *section,
                                                        const char *key, const char *fmt, ...)
{
    char what[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    /* inih goes on after an error and reports the first one's line: keep the first message */
    if (!x->msg[0]) snprintf(x->msg, sizeof x->msg, "[%s] %s: %s", section, key, what);
    return 0;
}

static int fs__ll(const char *v, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < min || n > max) return FS_EINVAL;
    *out = n;
    return FS_OK;
}

static int fs__int(fs__ctx_t *x, const char *s, const char *k, const char *v, int min, int max, int *out)
{
    long long n;
    if (fs__ll(v, min, max, &n)) return fs__fail(x, s, k, "must be an integer from %d to %d", min, max);
    *out = (int)n;
    return 1;
}

static int fs__prob(fs__ctx_t *x, const char *s, const char *k, const char *v, double *out)
{
    char *end;
    double d = strtod(v, &end);
    if (end != v && *end == '%' && end[1] == 0) {
        d /= 100.0;
        end++;
    }
    if (end == v || *end || !(d >= 0 && d <= 1))
        return fs__fail(x, s, k, "must be a probability from 0 to 1 (e.g. 0.6 or 60%%)");
    *out = d;
    return 1;
}

static int fs__dur(fs__ctx_t *x, const char *s, const char *k, const char *v, double min, double max, double *out)
{
    double d;
    if (fs_parse_duration(v, &d) || d < min || d > max)
        return fs__fail(x, s, k, "must be a duration from %gs to %gs such as 500ms, 5s or 2m", min, max);
    *out = d;
    return 1;
}

static int fs__bool(fs__ctx_t *x, const char *s, const char *k, const char *v, int *out)
{
    if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcmp(v, "1") || !strcasecmp(v, "on")) {
        *out = 1;
    } else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcmp(v, "0") || !strcasecmp(v, "off")) {
        *out = 0;
    } else {
        return fs__fail(x, s, k, "must be true or false");
    }
    return 1;
}

static int fs__str(fs__ctx_t *x, const char *s, const char *k, const char *v, char *out, size_t cap)
{
    if (strlen(v) >= cap) return fs__fail(x, s, k, "longer than %zu bytes", cap - 1);
    strcpy(out, v);
    return 1;
}

static int fs__campaign_key(fs__ctx_t *x, const char *k, const char *v)
{
    fs_campaign_t *c = x->c;
    const char *s = "campaign";
    if (!strcmp(k, "name")) return fs__str(x, s, k, v, c->name, sizeof c->name);
    if (!strcmp(k, "duration")) {
        x->line_duration = x->line;
        return fs__dur(x, s, k, v, 0.1, 86400, &c->duration_s);
    }
    if (!strcmp(k, "drain")) return fs__dur(x, s, k, v, 0, 3600, &c->drain_s);
    if (!strcmp(k, "connections")) return fs__int(x, s, k, v, 1, 10000, &c->connections);
    if (!strcmp(k, "seed")) {
        long long n;
        if (fs__ll(v, 0, INT64_MAX, &n)) return fs__fail(x, s, k, "must be a non-negative integer");
        c->seed = (unsigned long long)n;
        return 1;
    }
    return fs__fail(x, s, k, "unknown key (expected name, duration, drain, connections, seed)");
}

static int fs__launch_key(fs__ctx_t *x, const char *k, const char *v)
{
    fs_campaign_t *c = x->c;
    const char *s = "launch";
    if (!strcmp(k, "id")) {
        x->line_id = x->line;
        x->have_launch_id = 1;
        if (!fs_id_valid(v, strlen(v)))
            return fs__fail(x, s, k, "must be 1 to 128 characters from A-Z a-z 0-9 _ . ~ -");
        strcpy(c->launch_id, v);
        return 1;
    }
    if (!strcmp(k, "name")) return fs__str(x, s, k, v, c->launch_name, sizeof c->launch_name);
    if (!strcmp(k, "hold_seconds")) return fs__int(x, s, k, v, 1, 86400, &c->hold_seconds);
    if (!strcmp(k, "unique_id")) return fs__bool(x, s, k, v, &c->unique_id);
    if (!strcmp(k, "open_after")) return fs__dur(x, s, k, v, 0, 3600, &c->open_after_s);
    if (!strcmp(k, "close_at_end")) return fs__bool(x, s, k, v, &c->close_at_end);
    return fs__fail(x, s, k, "unknown key (expected id, name, hold_seconds, unique_id, open_after, close_at_end)");
}

static int fs__sku_key(fs__ctx_t *x, const char *section, const char *k, const char *v)
{
    fs_campaign_t *c = x->c;
    const char *id = section + 4;
    while (*id == ' ') id++;
    fs_campaign_sku_t *sku = NULL;
    for (size_t i = 0; i < c->nskus; i++)
        if (!strcmp(c->skus[i].id, id)) sku = &c->skus[i];
    if (!sku) {
        if (!fs_id_valid(id, strlen(id)))
            return fs__fail(x, section, "(section)", "the SKU id must be 1 to 128 characters from A-Z a-z 0-9 _ . ~ -");
        if (c->nskus == FS_CAMPAIGN_MAX_SKUS)
            return fs__fail(x, section, "(section)", "at most %d SKUs", FS_CAMPAIGN_MAX_SKUS);
        sku = &c->skus[c->nskus++];
        memset(sku, 0, sizeof *sku);
        strcpy(sku->id, id);
        sku->weight = 1;
        sku->line = x->section_line;
    }
    if (!strcmp(k, "stock")) {
        if (fs__ll(v, 1, 100000000, &sku->stock)) return fs__fail(x, section, k, "must be an integer from 1 to 100000000");
        sku->have_stock = 1;
        return 1;
    }
    if (!strcmp(k, "per_user_limit")) {
        sku->have_limit = 1;
        return fs__int(x, section, k, v, 1, 1000000, &sku->per_user_limit);
    }
    if (!strcmp(k, "price_cents")) {
        if (fs__ll(v, 0, 1000000000000LL, &sku->price_cents)) return fs__fail(x, section, k, "must be an integer from 0 to 10^12");
        sku->have_price = 1;
        return 1;
    }
    if (!strcmp(k, "weight")) {
        char *end;
        double w = strtod(v, &end);
        if (end == v || *end || !(w >= 0) || !isfinite(w)) return fs__fail(x, section, k, "must be a non-negative number");
        sku->weight = w;
        return 1;
    }
    return fs__fail(x, section, k, "unknown key (expected stock, per_user_limit, price_cents, weight)");
}

static int fs__shoppers_key(fs__ctx_t *x, const char *k, const char *v)
{
    fs_campaign_t *c = x->c;
    const char *s = "shoppers";
    if (!strcmp(k, "count")) {
        x->have_shoppers = 1;
        if (fs__ll(v, 1, 1000000000, &c->shoppers)) return fs__fail(x, s, k, "must be an integer from 1 to 10^9");
        return 1;
    }
    if (!strcmp(k, "id_prefix")) {
        if (strlen(v) > 100 || !fs_user_valid(v, strlen(v)))
            return fs__fail(x, s, k, "must be 1 to 100 bytes without control characters");
        strcpy(c->shopper_prefix, v);
        return 1;
    }
    if (!strcmp(k, "qty")) {
        x->line_qty = x->line;
        long long a, b;
        char lo[32], hi[32];
        const char *dash = strchr(v, '-');
        if (dash && (size_t)(dash - v) < sizeof lo && strlen(dash + 1) < sizeof hi) {
            memcpy(lo, v, (size_t)(dash - v));
            lo[dash - v] = 0;
            strcpy(hi, dash + 1);
        } else if (!dash && strlen(v) < sizeof lo) {
            strcpy(lo, v);
            strcpy(hi, v);
        } else {
            lo[0] = 0;
        }
        if (!lo[0] || fs__ll(lo, 1, 1000, &a) || fs__ll(hi, 1, 1000, &b) || a > b)
            return fs__fail(x, s, k, "must be a number of units or a range such as 1-2 (1 to 1000)");
        c->qty_min = (int)a;
        c->qty_max = (int)b;
        return 1;
    }
    if (!strcmp(k, "pick")) {
        if (!strcmp(v, "random")) c->pick = FS_PICK_RANDOM;
        else if (!strcmp(v, "sequential")) c->pick = FS_PICK_SEQUENTIAL;
        else return fs__fail(x, s, k, "must be random or sequential");
        return 1;
    }
    return fs__fail(x, s, k, "unknown key (expected count, id_prefix, qty, pick)");
}

static int fs__behaviour_key(fs__ctx_t *x, const char *k, const char *v)
{
    fs_campaign_t *c = x->c;
    const char *s = "behaviour";
    if (!strcmp(k, "confirm")) {
        x->line_confirm = x->line;
        return fs__prob(x, s, k, v, &c->p_confirm);
    }
    if (!strcmp(k, "cancel")) {
        if (!x->line_confirm) x->line_confirm = x->line;
        return fs__prob(x, s, k, v, &c->p_cancel);
    }
    if (!strcmp(k, "think_min")) {
        x->line_think = x->line;
        return fs__dur(x, s, k, v, 0, 3600, &c->think_min_s);
    }
    if (!strcmp(k, "think_max")) {
        x->line_think = x->line;
        return fs__dur(x, s, k, v, 0, 3600, &c->think_max_s);
    }
    if (!strcmp(k, "max_retries")) return fs__int(x, s, k, v, 0, 100, &c->max_retries);
    if (!strcmp(k, "backoff")) return fs__dur(x, s, k, v, 0.001, 60, &c->backoff_s);
    if (!strcmp(k, "backoff_max")) return fs__dur(x, s, k, v, 0.001, 600, &c->backoff_max_s);
    if (!strcmp(k, "retry_not_open")) return fs__bool(x, s, k, v, &c->retry_not_open);
    if (!strcmp(k, "idempotency")) return fs__bool(x, s, k, v, &c->idempotency);
    return fs__fail(x, s, k, "unknown key (expected confirm, cancel, think_min, think_max, "
                             "max_retries, backoff, backoff_max, retry_not_open, idempotency)");
}

static int fs__profile_key(fs__ctx_t *x, const char *k, const char *v)
{
    if (strcmp(k, "phase") != 0) return fs__fail(x, "profile", k, "unknown key (expected phase)");
    fs_rate_phase_t ph;
    char err[200];
    if (fs_rate_parse_phase(v, &ph, err, sizeof err)) return fs__fail(x, "profile", k, "%s", err);
    if (fs_rate_profile_add(&x->c->profile, ph.kind, ph.from, ph.to, ph.dur_s))
        return fs__fail(x, "profile", k, "invalid phase");
    return 1;
}

static int fs__handler(void *user, const char *section, const char *k, const char *v)
{
    fs__ctx_t *x = user;
    if (!strcmp(section, "campaign")) return fs__campaign_key(x, k, v);
    if (!strcmp(section, "launch")) return fs__launch_key(x, k, v);
    if (!strncmp(section, "sku ", 4)) return fs__sku_key(x, section, k, v);
    if (!strcmp(section, "shoppers")) return fs__shoppers_key(x, k, v);
    if (!strcmp(section, "behaviour") || !strcmp(section, "behavior")) return fs__behaviour_key(x, k, v);
    if (!strcmp(section, "profile")) return fs__profile_key(x, k, v);
    if (!section[0]) return fs__fail(x, "", k, "settings must follow a [section] header");
    if (!x->msg[0]) snprintf(x->msg, sizeof x->msg, "unknown section [%s] (expected campaign, launch, sku ID, "
                                    "shoppers, behaviour, profile)", section);
    return 0;
}

static void fs__defaults(fs_campaign_t *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "rehearsal");
    snprintf(c->launch_name, sizeof c->launch_name, "Launch rehearsal");
    c->hold_seconds = 30;
    c->unique_id = 1;
    snprintf(c->shopper_prefix, sizeof c->shopper_prefix, "shopper-");
    c->qty_min = c->qty_max = 1;
    c->pick = FS_PICK_RANDOM;
    c->p_confirm = 0.7;
    c->p_cancel = 0.1;
    c->think_min_s = 0.2;
    c->think_max_s = 2.0;
    c->max_retries = 5;
    c->backoff_s = 0.05;
    c->backoff_max_s = 2.0;
    c->retry_not_open = 1;
    c->idempotency = 1;
    c->drain_s = -1;
    c->connections = 32;
    c->seed = 1;
    fs_rate_profile_init(&c->profile);
}

/* Checks that span several keys. Returns 0 or FS_EINVAL with a message. */
static int fs__validate(fs__ctx_t *x, char *err, size_t errcap)
{
    fs_campaign_t *c = x->c;
    const char *f = x->name;
    if (!x->have_launch_id) {
        snprintf(err, errcap, "%s: [launch] id: missing (the launch id to create, e.g. id = phone-x)", f);
        return FS_EINVAL;
    }
    if (c->unique_id && strlen(c->launch_id) + 20 > 128) {
        snprintf(err, errcap, "%s:%d: [launch] id: at most 108 characters when unique_id is on "
                              "(20 are appended)", f, x->line_id);
        return FS_EINVAL;
    }
    if (c->nskus == 0) {
        snprintf(err, errcap, "%s: [sku ID]: no SKU (add a section such as [sku black] with stock = 100)", f);
        return FS_EINVAL;
    }
    double wsum = 0;
    for (size_t i = 0; i < c->nskus; i++) {
        fs_campaign_sku_t *s = &c->skus[i];
        if (!s->have_stock) {
            snprintf(err, errcap, "%s:%d: [sku %s] stock: missing", f, s->line, s->id);
            return FS_EINVAL;
        }
        if (!s->have_limit) s->per_user_limit = 2;
        if (!s->have_price) s->price_cents = 0;
        wsum += s->weight;
    }
    if (!(wsum > 0)) {
        snprintf(err, errcap, "%s:%d: [sku %s] weight: every SKU has weight 0", f, c->skus[0].line, c->skus[0].id);
        return FS_EINVAL;
    }
    if (!x->have_shoppers) {
        snprintf(err, errcap, "%s: [shoppers] count: missing (how many distinct shoppers)", f);
        return FS_EINVAL;
    }
    if (c->p_confirm + c->p_cancel > 1.0 + 1e-9) {
        snprintf(err, errcap, "%s:%d: [behaviour] confirm + cancel: must not exceed 1 (the rest "
                              "abandon their holds)", f, x->line_confirm);
        return FS_EINVAL;
    }
    if (c->think_min_s > c->think_max_s) {
        snprintf(err, errcap, "%s:%d: [behaviour] think_min: must not exceed think_max", f, x->line_think);
        return FS_EINVAL;
    }
    if (c->backoff_s > c->backoff_max_s) {
        snprintf(err, errcap, "%s: [behaviour] backoff: must not exceed backoff_max", f);
        return FS_EINVAL;
    }
    if (c->profile.n == 0) {
        snprintf(err, errcap, "%s: [profile] phase: missing (e.g. phase = spike 2000 2s)", f);
        return FS_EINVAL;
    }
    if (c->duration_s <= 0) c->duration_s = c->profile.total_s;
    if (c->drain_s < 0) c->drain_s = c->think_max_s + 5;
    return FS_OK;
}

static int fs__parse(fs_campaign_t *c, fs__ctx_t *x, char *err, size_t errcap)
{
    int rc = ini_parse_stream(fs__reader, x, fs__handler, x);
    if (rc != 0) {
        snprintf(err, errcap, "%s:%d: %s", x->name, rc,
                 x->msg[0] ? x->msg : "malformed line (expected [section] or key = value)");
        fs_campaign_free(c);
        return FS_EINVAL;
    }
    if (fs__validate(x, err, errcap)) {
        fs_campaign_free(c);
        return FS_EINVAL;
    }
    return FS_OK;
}

int fs_campaign_load(fs_campaign_t *c, const char *path, char *err, size_t errcap)
{
    fs__defaults(c);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errcap, "cannot open campaign file %s: %s", path, strerror(errno));
        return FS_EINVAL;
    }
    fs__ctx_t x = {.c = c, .name = path, .f = f};
    int rc = fs__parse(c, &x, err, errcap);
    fclose(f);
    return rc;
}

int fs_campaign_parse(fs_campaign_t *c, const char *text, const char *name, char *err,
                      size_t errcap)
{
    fs__defaults(c);
    fs__ctx_t x = {.c = c, .name = name, .text = text};
    return fs__parse(c, &x, err, errcap);
}

void fs_campaign_free(fs_campaign_t *c)
{
    fs_rate_profile_free(&c->profile);
}
