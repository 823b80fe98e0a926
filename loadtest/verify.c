/* Launch verification through the operator API and the order streams (see verify.h). */
#include "verify.h"
#include "common/log.h"

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define FS__MAX_NOTES 3 /* problems named per invariant; the rest are counted */

typedef struct {
    char *order_id, *rid, *user, *launch, *sku_field;
    int sku;
    long long qty;
} fs__entry_t;

typedef struct {
    fs_invariant_t *inv;
    int notes;
    long long problems;
} fs__acc_t;

__attribute__((format(printf, 2, 3))) static void fs__problem(fs__acc_t *a, const char *fmt, ...)
{
    a->inv->passed = 0;
    a->problems++;
    if (a->notes >= FS__MAX_NOTES) return;
    size_t len = strlen(a->inv->detail);
    if (len + 4 >= sizeof a->inv->detail) return;
    if (a->notes) {
        strcpy(a->inv->detail + len, "; ");
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->inv->detail + len, sizeof a->inv->detail - len, fmt, ap);
    va_end(ap);
    a->notes++;
}

static void fs__finish(fs__acc_t *a, const char *ok_fmt, ...) __attribute__((format(printf, 2, 3)));
static void fs__finish(fs__acc_t *a, const char *ok_fmt, ...)
{
    if (a->inv->passed) {
        va_list ap;
        va_start(ap, ok_fmt);
        vsnprintf(a->inv->detail, sizeof a->inv->detail, ok_fmt, ap);
        va_end(ap);
    } else if (a->problems > a->notes) {
        size_t len = strlen(a->inv->detail);
        snprintf(a->inv->detail + len, sizeof a->inv->detail - len, "; and %lld more",
                 a->problems - a->notes);
    }
}

static long long fs__jint(const json_t *o, const char *k, int *ok)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v)) {
        *ok = 0;
        return 0;
    }
    return (long long)json_integer_value(v);
}

/* Reads one SKU's stream. Returns 0, or -1 with a message in err. */
static int fs__read_stream(redisContext *rc, const char *launch, const char *sku, int sku_index,
                           fs__entry_t **entries, size_t *n, size_t *cap, char *err, size_t errcap)
{
    char key[400], start[64] = "-";
    snprintf(key, sizeof key, "fs:{%s:%s}:orders", launch, sku);
    for (;;) {
        redisReply *r = redisCommand(rc, "XRANGE %s %s + COUNT 1000", key, start);
        if (!r) {
            snprintf(err, errcap, "XRANGE %.200s: %.80s", key, rc->errstr);
            return -1;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errcap, "XRANGE %.200s: %.80s", key, r->str);
            freeReplyObject(r);
            return -1;
        }
        if (r->type != REDIS_REPLY_ARRAY) {
            snprintf(err, errcap, "XRANGE %.200s: unexpected reply type %d", key, r->type);
            freeReplyObject(r);
            return -1;
        }
        for (size_t i = 0; i < r->elements; i++) {
            redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) continue;
            snprintf(start, sizeof start, "(%s", e->element[0]->str);
            redisReply *f = e->element[1];
            if (*n == *cap) {
                *cap = *cap ? *cap * 2 : 256;
                *entries = fs_xrealloc(*entries, *cap * sizeof **entries);
            }
            fs__entry_t *en = &(*entries)[(*n)++];
            memset(en, 0, sizeof *en);
            en->sku = sku_index;
            en->qty = -1;
            for (size_t j = 0; j + 1 < f->elements; j += 2) {
                const char *name = f->element[j]->str;
                redisReply *v = f->element[j + 1];
                if (v->type != REDIS_REPLY_STRING) continue;
                char *val = fs_xstrndup(v->str, v->len);
                if (!strcmp(name, "order_id")) en->order_id = val;
                else if (!strcmp(name, "reservation_id")) en->rid = val;
                else if (!strcmp(name, "user_id")) en->user = val;
                else if (!strcmp(name, "launch")) en->launch = val;
                else if (!strcmp(name, "sku")) en->sku_field = val;
                else if (!strcmp(name, "qty")) {
                    char *end;
                    long long q = strtoll(val, &end, 10);
                    en->qty = (end != val && !*end) ? q : -1;
                    free(val);
                } else {
                    free(val);
                }
            }
        }
        size_t got = r->elements;
        freeReplyObject(r);
        if (got < 1000) return 0;
    }
}

void fs_verify_run(const fs_verify_in_t *in, fs_verify_out_t *out)
{
    const fs_campaign_t *c = in->campaign;
    memset(out, 0, sizeof *out);
    static const char *const names[FS_VERIFY_N] = {"counters_add_up", "nothing_oversold",
                                                   "per_user_limit", "orders_exactly_once",
                                                   "told_orders_present"};
    fs__acc_t acc[FS_VERIFY_N];
    for (int i = 0; i < FS_VERIFY_N; i++) {
        out->inv[i].name = names[i];
        out->inv[i].passed = 1;
        acc[i] = (fs__acc_t){.inv = &out->inv[i]};
    }
    fs__acc_t *counters = &acc[0], *oversold = &acc[1], *limit = &acc[2], *once = &acc[3],
              *told = &acc[4];

    /* ---- the operator API's counters ---- */
    long long sold[FS_CAMPAIGN_MAX_SKUS];
    int have_sold[FS_CAMPAIGN_MAX_SKUS] = {0};
    if (!in->admin) {
        fs__problem(counters, "cannot read the launch through the operator API: %s",
                    in->admin_error ? in->admin_error : "no answer");
        fs__problem(oversold, "no counters from the operator API");
    } else {
        json_t *skus = json_object_get(in->admin, "skus");
        for (size_t i = 0; i < c->nskus; i++) {
            const fs_campaign_sku_t *cs = &c->skus[i];
            json_t *found = NULL;
            size_t j;
            json_t *s;
            json_array_foreach(skus, j, s) {
                json_t *id = json_object_get(s, "sku");
                if (json_is_string(id) && !strcmp(json_string_value(id), cs->id)) found = s;
            }
            if (!found) {
                fs__problem(counters, "SKU %s missing from the operator API", cs->id);
                continue;
            }
            int ok = 1;
            long long total = fs__jint(found, "total", &ok), avail = fs__jint(found, "available", &ok),
                      held = fs__jint(found, "held", &ok), so = fs__jint(found, "sold", &ok);
            if (!ok) {
                fs__problem(counters, "SKU %s: counters missing or not integers", cs->id);
                continue;
            }
            sold[i] = so;
            have_sold[i] = 1;
            if (avail < 0 || held < 0 || so < 0)
                fs__problem(counters, "SKU %s: negative counter (available %lld held %lld sold %lld)",
                            cs->id, avail, held, so);
            if (avail + held + so != total)
                fs__problem(counters, "SKU %s: available %lld + held %lld + sold %lld = %lld != total %lld",
                            cs->id, avail, held, so, avail + held + so, total);
            if (total != cs->stock)
                fs__problem(counters, "SKU %s: total %lld but the campaign created %lld units",
                            cs->id, total, cs->stock);
            if (so > cs->stock)
                fs__problem(oversold, "SKU %s: sold %lld of %lld units", cs->id, so, cs->stock);
        }
    }

    /* ---- the tool's own view ---- */
    long long told_units[FS_CAMPAIGN_MAX_SKUS] = {0};
    for (size_t i = 0; i < in->norders; i++) told_units[in->orders[i].sku] += in->orders[i].qty;
    for (size_t i = 0; i < c->nskus; i++)
        if (told_units[i] > c->skus[i].stock)
            fs__problem(oversold, "SKU %s: the server confirmed %lld units to this tool, stock %lld",
                        c->skus[i].id, told_units[i], c->skus[i].stock);

    /* ---- the order streams ---- */
    fs__entry_t *entries = NULL;
    size_t n = 0, cap = 0;
    char err[300] = "";
    struct timeval tv = {2, 0};
    redisContext *rc = redisConnectWithTimeout(in->redis_host, in->redis_port, tv);
    if (!rc || rc->err) {
        snprintf(err, sizeof err, "cannot connect to Redis %s:%d: %s", in->redis_host,
                 in->redis_port, rc ? rc->errstr : "out of memory");
    } else {
        redisSetTimeout(rc, (struct timeval){10, 0});
        if (in->redis_password && in->redis_password[0]) {
            redisReply *r = in->redis_user && in->redis_user[0]
                                ? redisCommand(rc, "AUTH %s %s", in->redis_user, in->redis_password)
                                : redisCommand(rc, "AUTH %s", in->redis_password);
            if (!r || r->type == REDIS_REPLY_ERROR)
                snprintf(err, sizeof err, "AUTH failed: %s", r && r->str ? r->str : "no answer");
            if (r) freeReplyObject(r);
        }
        if (!err[0] && in->redis_db) {
            redisReply *r = redisCommand(rc, "SELECT %d", in->redis_db);
            if (!r || r->type == REDIS_REPLY_ERROR)
                snprintf(err, sizeof err, "SELECT %d failed", in->redis_db);
            if (r) freeReplyObject(r);
        }
        for (size_t i = 0; !err[0] && i < c->nskus; i++)
            fs__read_stream(rc, in->launch, c->skus[i].id, (int)i, &entries, &n, &cap, err, sizeof err);
    }
    if (rc) redisFree(rc);
    if (err[0]) {
        for (int i = 1; i < FS_VERIFY_N; i++) fs__problem(&acc[i], "order streams unreadable: %s", err);
    } else {
        fs_smap_t order_ids, rids, per_user;
        fs_smap_init(&order_ids);
        fs_smap_init(&rids);
        fs_smap_init(&per_user);
        for (size_t i = 0; i < n; i++) {
            fs__entry_t *e = &entries[i];
            const char *sid = c->skus[e->sku].id;
            if (!e->order_id || !e->rid || !e->user || e->qty < 1) {
                fs__problem(once, "SKU %s: an entry without order_id, reservation_id, user_id or a valid qty", sid);
                continue;
            }
            out->stream_orders[e->sku]++;
            out->stream_units[e->sku] += e->qty;
            int created;
            int64_t *idx = fs_smap_upsert(&order_ids, e->order_id, strlen(e->order_id), &created);
            if (!created)
                fs__problem(once, "order %s appears more than once", e->order_id);
            else
                *idx = (int64_t)i;
            fs_smap_upsert(&rids, e->rid, strlen(e->rid), &created);
            if (!created) fs__problem(once, "reservation %.24s... confirmed into more than one order", e->rid);
            if (!e->launch || strcmp(e->launch, in->launch) || !e->sku_field || strcmp(e->sku_field, sid))
                fs__problem(once, "order %s in the stream of SKU %s names launch %s SKU %s", e->order_id,
                            sid, e->launch ? e->launch : "(none)", e->sku_field ? e->sku_field : "(none)");
            int64_t *mine = fs_smap_get(in->reserved, e->rid, strlen(e->rid));
            if (!mine || *mine != e->sku)
                fs__problem(once, "order %s is for reservation %.24s... that the server never gave this tool",
                            e->order_id, e->rid);
            char key[512];
            int kl = snprintf(key, sizeof key, "%d\x1f%s", e->sku, e->user);
            int64_t *units = fs_smap_upsert(&per_user, key, (size_t)kl, NULL);
            *units += e->qty;
        }
        for (size_t i = 0; i < per_user.cap; i++) {
            fs_smap_slot_t *sl = &per_user.slots[i];
            if (!sl->key) continue;
            int sku = atoi(sl->key);
            const char *user = strchr(sl->key, '\x1f') + 1;
            if (sl->value > c->skus[sku].per_user_limit)
                fs__problem(limit, "shopper %s bought %lld units of SKU %s (limit %d)", user,
                            (long long)sl->value, c->skus[sku].id, c->skus[sku].per_user_limit);
        }
        for (size_t i = 0; i < c->nskus; i++) {
            if (out->stream_units[i] > c->skus[i].stock)
                fs__problem(oversold, "SKU %s: %lld units in the order stream, stock %lld", c->skus[i].id,
                            out->stream_units[i], c->skus[i].stock);
            if (have_sold[i] && out->stream_units[i] != sold[i])
                fs__problem(oversold, "SKU %s: %lld units in the order stream but sold = %lld",
                            c->skus[i].id, out->stream_units[i], sold[i]);
        }
        for (size_t i = 0; i < in->norders; i++) {
            const fs_known_order_t *k = &in->orders[i];
            int64_t *idx = fs_smap_get(&order_ids, k->order_id, strlen(k->order_id));
            if (!idx) {
                fs__problem(told, "order %s (SKU %s, shopper %s) is not in the stream", k->order_id,
                            c->skus[k->sku].id, k->user);
                continue;
            }
            fs__entry_t *e = &entries[*idx];
            if (e->sku != k->sku || strcmp(e->rid, k->rid) || strcmp(e->user, k->user) || e->qty != k->qty)
                fs__problem(told, "order %s differs in the stream (SKU %s shopper %s qty %lld, told SKU %s "
                                  "shopper %s qty %d)", k->order_id, c->skus[e->sku].id, e->user, e->qty,
                            c->skus[k->sku].id, k->user, k->qty);
        }
        fs__finish(limit, "%zu shoppers checked against their SKU's limit", per_user.len);
        fs_smap_free(&order_ids);
        fs_smap_free(&rids);
        fs_smap_free(&per_user);
    }
    long long st_orders = 0, st_units = 0, stock = 0;
    for (size_t i = 0; i < c->nskus; i++) {
        st_orders += out->stream_orders[i];
        st_units += out->stream_units[i];
        stock += c->skus[i].stock;
    }
    fs__finish(counters, "%zu SKUs: available + held + sold == total == stock", c->nskus);
    fs__finish(oversold, "%lld of %lld units sold; streams, operator API and this tool agree", st_units, stock);
    fs__finish(once, "%lld orders, each order and reservation once, all placed by this tool", st_orders);
    fs__finish(told, "all %zu orders confirmed to this tool are in the streams", in->norders);
    for (size_t i = 0; i < n; i++) {
        free(entries[i].order_id);
        free(entries[i].rid);
        free(entries[i].user);
        free(entries[i].launch);
        free(entries[i].sku_field);
    }
    free(entries);
    out->passed = 1;
    for (int i = 0; i < FS_VERIFY_N; i++) out->passed &= out->inv[i].passed;
}

json_t *fs_verify_json(const fs_verify_out_t *v)
{
    json_t *arr = json_array();
    for (int i = 0; i < FS_VERIFY_N; i++)
        json_array_append_new(arr, json_pack("{s:s, s:s, s:b, s:s}", "name", v->inv[i].name,
                                             "result", v->inv[i].passed ? "PASS" : "FAIL",
                                             "passed", v->inv[i].passed, "detail", v->inv[i].detail));
    return json_pack("{s:s, s:b, s:o}", "result", v->passed ? "PASS" : "FAIL", "passed", v->passed,
                     "invariants", arr);
}

void fs_verify_print(FILE *f, const fs_verify_out_t *v)
{
    fprintf(f, "verification\n");
    for (int i = 0; i < FS_VERIFY_N; i++)
        fprintf(f, "  %s  %-20s %s\n", v->inv[i].passed ? "PASS" : "FAIL", v->inv[i].name, v->inv[i].detail);
    fprintf(f, "  %s  overall\n", v->passed ? "PASS" : "FAIL");
}
