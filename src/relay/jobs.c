/* Jobs: one per stream entry this relay holds (see relay.h).
 *
 * States: LOADING (taken over; attempt count being read) → READY (queue, FIFO) → SENDING (one HTTP
 * request) → FINISHING (ack / fail / dead-letter command) → freed, or → WAITING (retry heap) →
 * READY again. Deliveries start only while fewer than max_in_flight are in flight and the
 * receiver has not asked us to pause (Retry-After on 429/503).
 *
 * Ownership: a job is freed only here: when its ack or dead letter is recorded, when Redis says
 * the entry is gone or held by another consumer, or when it is given back at shutdown. Callbacks
 * of commands about jobs that may be freed meanwhile (attempt loads, heartbeats) look jobs up by
 * (stream, id) instead of holding pointers; finishing commands hold the pointer because a
 * FINISHING job is freed by nothing but its own command's callback. */
#include "relay.h"
#include "../common/log.h"
#include "../common/timeutil.h"
#include "flashsale/error.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FS__ACK_CHUNK 256

static void fs__dispatch(fs_relay_t *r);
static void fs__finish_dead(fs_relay_t *r, fs_relay_job_t *j, fs_dead_t kind, const char *error);
static void fs__abandon(fs_relay_t *r, fs_relay_stream_t *s, fs_relay_job_t **jobs, size_t n);

/* ---- the (stream, id) table ---- */

static size_t fs__hash(const fs_relay_stream_t *s, const char *id, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)s;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)id[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

fs_relay_job_t *fs_relay_job_find(fs_relay_t *r, fs_relay_stream_t *s, const char *id, size_t len)
{
    if (!r->table_cap) return NULL;
    size_t b = fs__hash(s, id, len) & (r->table_cap - 1);
    for (fs_relay_job_t *j = r->table[b]; j; j = j->hash_next)
        if (j->stream == s && strlen(j->id) == len && memcmp(j->id, id, len) == 0) return j;
    return NULL;
}

static void fs__table_insert(fs_relay_t *r, fs_relay_job_t *j)
{
    if (r->njobs + 1 > r->table_cap / 2) {
        size_t cap = r->table_cap ? r->table_cap * 2 : 256;
        fs_relay_job_t **t = fs_xcalloc(cap, sizeof *t);
        for (size_t i = 0; i < r->table_cap; i++)
            for (fs_relay_job_t *x = r->table[i], *next; x; x = next) {
                next = x->hash_next;
                size_t b = fs__hash(x->stream, x->id, strlen(x->id)) & (cap - 1);
                x->hash_next = t[b];
                t[b] = x;
            }
        free(r->table);
        r->table = t;
        r->table_cap = cap;
    }
    size_t b = fs__hash(j->stream, j->id, strlen(j->id)) & (r->table_cap - 1);
    j->hash_next = r->table[b];
    r->table[b] = j;
}

static void fs__table_remove(fs_relay_t *r, fs_relay_job_t *j)
{
    size_t b = fs__hash(j->stream, j->id, strlen(j->id)) & (r->table_cap - 1);
    for (fs_relay_job_t **p = &r->table[b]; *p; p = &(*p)->hash_next)
        if (*p == j) {
            *p = j->hash_next;
            return;
        }
    fs_assert(!"job not in table");
}

/* ---- the retry heap (min-heap on not_before_ns) ---- */

static void fs__heap_swap(fs_relay_t *r, size_t a, size_t b)
{
    fs_relay_job_t *t = r->heap[a];
    r->heap[a] = r->heap[b];
    r->heap[b] = t;
    r->heap[a]->heap_idx = a;
    r->heap[b]->heap_idx = b;
}

static void fs__heap_up(fs_relay_t *r, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (r->heap[p]->not_before_ns <= r->heap[i]->not_before_ns) break;
        fs__heap_swap(r, i, p);
        i = p;
    }
}

static void fs__heap_down(fs_relay_t *r, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < r->heap_len && r->heap[l]->not_before_ns < r->heap[m]->not_before_ns) m = l;
        if (l + 1 < r->heap_len && r->heap[l + 1]->not_before_ns < r->heap[m]->not_before_ns) m = l + 1;
        if (m == i) return;
        fs__heap_swap(r, i, m);
        i = m;
    }
}

static void fs__heap_push(fs_relay_t *r, fs_relay_job_t *j)
{
    if (r->heap_len == r->heap_cap) {
        r->heap_cap = r->heap_cap ? r->heap_cap * 2 : 64;
        r->heap = fs_xrealloc(r->heap, r->heap_cap * sizeof *r->heap);
    }
    j->heap_idx = r->heap_len;
    r->heap[r->heap_len++] = j;
    fs__heap_up(r, j->heap_idx);
}

static void fs__heap_remove(fs_relay_t *r, fs_relay_job_t *j)
{
    size_t i = j->heap_idx;
    fs_assert(i < r->heap_len && r->heap[i] == j);
    r->heap_len--;
    if (i != r->heap_len) {
        r->heap[i] = r->heap[r->heap_len];
        r->heap[i]->heap_idx = i;
        fs__heap_down(r, i);
        fs__heap_up(r, i);
    }
}

/* ---- lifecycle ---- */

void fs_relay_jobs_init(fs_relay_t *r)
{
    r->table = NULL;
    r->table_cap = 0;
}

size_t fs_relay_jobs_held(const fs_relay_t *r)
{
    return r->njobs;
}

int fs_relay_jobs_quiet(const fs_relay_t *r)
{
    return r->njobs == 0 && r->ops_in_flight == 0;
}

static void fs__job_free(fs_relay_t *r, fs_relay_job_t *j)
{
    fs_relay_stream_t *s = j->stream;
    if (j->stream_prev) j->stream_prev->stream_next = j->stream_next;
    else s->jobs = j->stream_next;
    if (j->stream_next) j->stream_next->stream_prev = j->stream_prev;
    s->njobs--;
    fs__table_remove(r, j);
    r->njobs--;
    fs_buf_free(&j->body);
    free(j->order_id);
    free(j->malformed);
    free(j);
    if (r->stopping) fs_relay_maybe_stopped(r);
    else fs_relay_streams_kick(r);
}

void fs_relay_jobs_free(fs_relay_t *r)
{
    for (size_t i = 0; i < r->table_cap; i++)
        for (fs_relay_job_t *j = r->table[i], *next; j; j = next) {
            next = j->hash_next;
            fs_buf_free(&j->body);
            free(j->order_id);
            free(j->malformed);
            free(j);
        }
    free(r->table);
    free(r->heap);
    r->table = NULL;
    r->heap = NULL;
    r->table_cap = r->heap_len = r->heap_cap = 0;
    r->njobs = 0;
}

static void fs__make_ready(fs_relay_t *r, fs_relay_job_t *j)
{
    j->state = FS_JOB_READY;
    j->q_next = NULL;
    if (r->ready_tail) r->ready_tail->q_next = j;
    else r->ready_head = j;
    r->ready_tail = j;
    r->nready++;
}

/* Random jitter helper: uniform in [0, n]. */
static uint64_t fs__rand_upto(uint64_t n)
{
    if (n == 0) return 0;
    uint64_t x = ((uint64_t)random() << 31) ^ (uint64_t)random();
    return x % (n + 1);
}

/* The wait before attempt `attempts + 1`: min * 2^(attempts-1), capped, with "equal jitter"
 * (half fixed, half random) so that orders failed together do not come back together. */
static uint64_t fs__backoff_ms(const fs_relay_config_t *c, int attempts)
{
    uint64_t d = (uint64_t)c->backoff_min_ms;
    for (int i = 1; i < attempts && d < (uint64_t)c->backoff_max_ms; i++) d *= 2;
    if (d > (uint64_t)c->backoff_max_ms) d = (uint64_t)c->backoff_max_ms;
    return d / 2 + fs__rand_upto(d - d / 2);
}

static void fs__wait(fs_relay_t *r, fs_relay_job_t *j, uint64_t delay_ms)
{
    j->state = FS_JOB_WAITING;
    j->not_before_ns = fs_mono_ns() + delay_ms * 1000000u;
    fs__heap_push(r, j);
    fs__dispatch(r);
}

fs_relay_job_t *fs_relay_job_add(fs_relay_t *r, fs_relay_stream_t *s, const char *id, size_t idlen,
                                 const redisReply *fields, int taken_over)
{
    if (idlen == 0 || idlen >= sizeof ((fs_relay_job_t *)0)->id) return NULL;
    if (fs_relay_job_find(r, s, id, idlen)) {
        r->metrics.duplicates_skipped++;
        return NULL;
    }
    fs_relay_job_t *j = fs_xcalloc(1, sizeof *j);
    j->stream = s;
    memcpy(j->id, id, idlen);
    j->id_ms = strtoll(j->id, NULL, 10);
    fs_buf_init(&j->body);
    char why[200];
    if (fs_relay_payload(fields, &j->body, &j->order_id, why, sizeof why))
        j->malformed = fs_xstrndup(why, strlen(why));
    j->stream_next = s->jobs;
    if (s->jobs) s->jobs->stream_prev = j;
    s->jobs = j;
    s->njobs++;
    fs__table_insert(r, j);
    r->njobs++;
    if (taken_over) r->metrics.taken_over++;
    else r->metrics.read++;
    if (r->stopping) {
        j->state = FS_JOB_LOADING;
        fs__abandon(r, s, &j, 1);
        return NULL;
    }
    if (j->malformed) {
        fs_warn("relay_malformed_entry", "stream=%s id=%s reason=\"%s\"", s->key, j->id, why);
        fs__finish_dead(r, j, FS_DEAD_MALFORMED, why);
        return NULL;
    }
    if (taken_over) {
        j->state = FS_JOB_LOADING;
        return j;
    }
    fs__make_ready(r, j);
    fs__dispatch(r);
    return j;
}

void fs_relay_job_loaded(fs_relay_t *r, fs_relay_job_t *j, int attempts, int64_t last_ms)
{
    if (j->state != FS_JOB_LOADING) return;
    j->attempts = attempts > 0 ? attempts : 0;
    if (r->stopping) {
        fs__abandon(r, j->stream, &j, 1);
        return;
    }
    if (j->attempts >= r->cfg->max_attempts) {
        fs__finish_dead(r, j, FS_DEAD_MAX_ATTEMPTS, "attempts exhausted before a take-over");
        return;
    }
    /* Go on with the backoff of the previous owner, counted from its last attempt. */
    if (j->attempts > 0 && last_ms > 0) {
        int64_t due = last_ms + (int64_t)fs__backoff_ms(r->cfg, j->attempts);
        int64_t now = fs_wall_ms();
        if (due > now) {
            fs__wait(r, j, (uint64_t)(due - now));
            return;
        }
    }
    fs__make_ready(r, j);
    fs__dispatch(r);
}

void fs_relay_job_lost(fs_relay_t *r, fs_relay_job_t *j)
{
    r->metrics.lost++;
    fs_info("relay_entry_lost", "stream=%s id=%s order_id=%s", j->stream->key, j->id,
            j->order_id ? j->order_id : "");
    switch (j->state) {
    case FS_JOB_LOADING: fs__job_free(r, j); break;
    case FS_JOB_WAITING:
        fs__heap_remove(r, j);
        fs__job_free(r, j);
        break;
    case FS_JOB_READY:   /* freed when it reaches the head of the queue */
    case FS_JOB_SENDING: /* its outcome decides */
        j->lost = 1;
        break;
    case FS_JOB_FINISHING: break; /* the command in flight learns it ("gone"/"lost") */
    }
}

/* ---- finishing: ack, fail, dead letter ---- */

/* One line a second at most per kind of Redis trouble (an outage would flood the log): returns 1
 * when the caller may log, with *suppressed set to the lines dropped since the last one. */
typedef struct {
    uint64_t last_ns, dropped;
} fs__limit_t;

static int fs__may_log(fs__limit_t *l, uint64_t *suppressed)
{
    uint64_t now = fs_mono_ns();
    if (l->last_ns && now - l->last_ns < 1000000000u) {
        l->dropped++;
        return 0;
    }
    *suppressed = l->dropped;
    l->dropped = 0;
    l->last_ns = now;
    return 1;
}

typedef struct {
    fs_relay_t *r;
    fs_relay_stream_t *s;
    size_t n;
    fs_relay_job_t *jobs[];
} fs__batch_t;

static void fs__on_acked(redisReply *reply, int err, void *arg)
{
    fs__batch_t *b = arg;
    fs_relay_t *r = b->r;
    r->ops_in_flight--;
    int ok = !err && reply->type == REDIS_REPLY_INTEGER;
    static fs__limit_t limit;
    uint64_t suppressed;
    if (!ok && fs__may_log(&limit, &suppressed)) {
        char msg[200];
        fs_warn("relay_ack_failed", "stream=%s entries=%zu suppressed=%" PRIu64 " error=%s", b->s->key,
                b->n, suppressed,
                fs_log_quote(msg, sizeof msg, err ? fs_strerror(err) : reply->str ? reply->str : "?"));
    }
    int64_t now_ms = fs_wall_ms();
    for (size_t i = 0; i < b->n; i++) {
        fs_relay_job_t *j = b->jobs[i];
        if (!ok) {
            /* Sent again by the tick; meanwhile the heartbeat keeps the entry ours. */
            j->q_next = r->fin_retry;
            r->fin_retry = j;
            continue;
        }
        r->metrics.delivered++;
        if (j->id_ms > 0 && now_ms >= j->id_ms)
            fs_relay_hist_observe(&r->metrics.order_latency, (uint64_t)(now_ms - j->id_ms) * 1000u);
        fs__job_free(r, j);
    }
    free(b);
}

static void fs__flush_stream_acks(fs_relay_t *r, fs_relay_stream_t *s)
{
    while (s->acks) {
        fs__batch_t *b = fs_xmalloc(sizeof *b + FS__ACK_CHUNK * sizeof b->jobs[0]);
        b->r = r;
        b->s = s;
        b->n = 0;
        while (s->acks && b->n < FS__ACK_CHUNK) {
            b->jobs[b->n++] = s->acks;
            s->acks = s->acks->q_next;
        }
        size_t argc = 7 + 2 * b->n, k = 0;
        const char **argv = fs_xmalloc(argc * sizeof *argv);
        size_t *lens = fs_xmalloc(argc * sizeof *lens);
        argv[k++] = "FCALL";
        argv[k++] = "fs_relay_ack";
        argv[k++] = "2";
        argv[k++] = s->key;
        argv[k++] = s->sku->delivery_key;
        argv[k++] = r->cfg->group;
        argv[k++] = s->replay ? "1" : "0";
        for (size_t i = 0; i < b->n; i++) {
            argv[k++] = b->jobs[i]->id;
            argv[k++] = b->jobs[i]->order_id ? b->jobs[i]->order_id : "";
        }
        for (size_t i = 0; i < k; i++) lens[i] = strlen(argv[i]);
        r->ops_in_flight++;
        fs_redis_command(r->writer, fs__on_acked, b, (int)k, argv, lens);
        free(argv);
        free(lens);
    }
}

static void fs__on_ack_timer(uv_timer_t *t)
{
    fs_relay_t *r = t->data;
    while (r->dirty) {
        fs_relay_stream_t *s = r->dirty;
        r->dirty = s->next_dirty;
        s->ack_dirty = 0;
        fs__flush_stream_acks(r, s);
    }
}

static void fs__finish_ack(fs_relay_t *r, fs_relay_job_t *j)
{
    fs_relay_stream_t *s = j->stream;
    j->state = FS_JOB_FINISHING;
    j->fin = FS_FIN_ACK;
    j->q_next = s->acks;
    s->acks = j;
    if (!s->ack_dirty) {
        s->ack_dirty = 1;
        s->next_dirty = r->dirty;
        r->dirty = s;
    }
    /* Acks of one loop turn go out together, one Function call per stream. */
    if (!uv_is_active((uv_handle_t *)&r->ack_timer)) {
        r->ack_timer.data = r;
        uv_timer_start(&r->ack_timer, fs__on_ack_timer, 0, 0);
    }
}

static void fs__on_failed_recorded(redisReply *reply, int err, void *arg)
{
    fs_relay_job_t *j = arg;
    fs_relay_t *r = j->stream->sku->relay;
    r->ops_in_flight--;
    if (!err && reply->type == REDIS_REPLY_STRING && (strcmp(reply->str, "gone") == 0 ||
                                                      strcmp(reply->str, "lost") == 0)) {
        /* Delivered or taken over elsewhere meanwhile: not ours to retry. */
        if (reply->str[0] == 'l') r->metrics.lost++;
        fs__job_free(r, j);
        return;
    }
    static fs__limit_t limit;
    uint64_t suppressed;
    if ((err || reply->type == REDIS_REPLY_ERROR) && fs__may_log(&limit, &suppressed)) {
        /* The count lives on in memory; only a take-over would start it from the last record. */
        char msg[200];
        fs_warn("relay_attempt_record_failed", "stream=%s id=%s suppressed=%" PRIu64 " error=%s",
                j->stream->key, j->id, suppressed,
                fs_log_quote(msg, sizeof msg, err ? fs_strerror(err) : reply->str));
    }
    if (r->stopping) {
        fs__abandon(r, j->stream, &j, 1);
        return;
    }
    j->state = FS_JOB_WAITING;
    j->fin = FS_FIN_NONE;
    fs__heap_push(r, j);
    fs__dispatch(r);
}

static void fs__finish_fail(fs_relay_t *r, fs_relay_job_t *j)
{
    j->state = FS_JOB_FINISHING;
    j->fin = FS_FIN_FAIL;
    char attempts[16];
    snprintf(attempts, sizeof attempts, "%d", j->attempts);
    const char *argv[] = {"FCALL", "fs_relay_fail", "2", j->stream->key, j->stream->sku->delivery_key,
                          r->cfg->group, r->consumer, j->id, j->order_id ? j->order_id : "",
                          attempts, j->error};
    size_t lens[11];
    for (int i = 0; i < 11; i++) lens[i] = strlen(argv[i]);
    r->ops_in_flight++;
    fs_redis_command(r->writer, fs__on_failed_recorded, j, 11, argv, lens);
}

static void fs__send_dead(fs_relay_t *r, fs_relay_job_t *j);

static void fs__on_dead_recorded(redisReply *reply, int err, void *arg)
{
    fs_relay_job_t *j = arg;
    fs_relay_t *r = j->stream->sku->relay;
    r->ops_in_flight--;
    if (err || reply->type != REDIS_REPLY_STRING) {
        static fs__limit_t limit;
        uint64_t suppressed;
        char msg[200];
        if (fs__may_log(&limit, &suppressed))
            fs_warn("relay_dead_letter_failed", "stream=%s id=%s suppressed=%" PRIu64 " error=%s",
                    j->stream->key, j->id, suppressed,
                    fs_log_quote(msg, sizeof msg, err ? fs_strerror(err) : reply->str ? reply->str : "?"));
        j->q_next = r->fin_retry;
        r->fin_retry = j;
        return;
    }
    if (strcmp(reply->str, "gone") != 0) {
        r->metrics.dead[j->dead_kind]++;
        char msg[420];
        fs_warn("relay_dead_lettered", "stream=%s id=%s order_id=%s reason=%s attempts=%d dead_id=%s error=%s",
                j->stream->key, j->id, j->order_id ? j->order_id : "", fs_dead_name(j->dead_kind),
                j->attempts, reply->str, fs_log_quote(msg, sizeof msg, j->error));
    }
    fs__job_free(r, j);
}

static void fs__send_dead(fs_relay_t *r, fs_relay_job_t *j)
{
    char attempts[16];
    snprintf(attempts, sizeof attempts, "%d", j->attempts);
    const char *argv[] = {"FCALL", "fs_relay_dead", "3", j->stream->key, j->stream->sku->delivery_key,
                          j->stream->sku->dead_key, r->cfg->group, j->id,
                          j->order_id ? j->order_id : "", j->stream->replay ? "replay" : "orders",
                          fs_dead_name(j->dead_kind), j->error, attempts};
    size_t lens[13];
    for (int i = 0; i < 13; i++) lens[i] = strlen(argv[i]);
    r->ops_in_flight++;
    fs_redis_command(r->writer, fs__on_dead_recorded, j, 13, argv, lens);
}

static void fs__finish_dead(fs_relay_t *r, fs_relay_job_t *j, fs_dead_t kind, const char *error)
{
    j->state = FS_JOB_FINISHING;
    j->fin = FS_FIN_DEAD;
    j->dead_kind = (int)kind;
    if (error != j->error) snprintf(j->error, sizeof j->error, "%s", error);
    fs__send_dead(r, j);
}

void fs_relay_jobs_retry_finishing(fs_relay_t *r)
{
    fs_relay_job_t *list = r->fin_retry;
    r->fin_retry = NULL;
    while (list) {
        fs_relay_job_t *j = list;
        list = j->q_next;
        if (j->fin == FS_FIN_ACK) fs__finish_ack(r, j);
        else fs__send_dead(r, j);
    }
}

/* ---- delivery ---- */

static fs_attempt_t fs__classify(const fs_deliver_result_t *res)
{
    if (res->err == 0) {
        int st = res->status;
        if (st >= 200 && st < 300) return FS_ATT_2XX;
        if (st == 408) return FS_ATT_408;
        if (st == 429) return FS_ATT_429;
        if (st >= 400 && st < 500) return FS_ATT_4XX;
        if (st >= 500 && st < 600) return FS_ATT_5XX;
        return FS_ATT_OTHER_STATUS;
    }
    if (res->tls_failure) return FS_ATT_TLS;
    if (res->err == FS_ETIMEDOUT) return FS_ATT_TIMEOUT;
    if (res->err == FS_EPROTO) return FS_ATT_PROTOCOL;
    return FS_ATT_NETWORK;
}

/* "http 503: <start of the body>" with control characters replaced. */
static void fs__http_error(char *out, size_t cap, const fs_deliver_result_t *res)
{
    int n = snprintf(out, cap, "http %d", res->status);
    if (n < 0 || (size_t)n >= cap) return;
    if (res->body_len) {
        size_t o = (size_t)n;
        const char *pre = ": ";
        for (const char *p = pre; *p && o + 1 < cap; p++) out[o++] = *p;
        for (size_t i = 0; i < res->body_len && i < 200 && o + 1 < cap; i++) {
            unsigned char ch = (unsigned char)res->body[i];
            out[o++] = ch < 0x20 || ch == 0x7f || ch == '|' ? ' ' : (char)ch;
        }
        out[o] = 0;
    }
}

/* At most one line a second about failed attempts (an outage would otherwise flood the log). */
static void fs__log_failure(fs_relay_t *r, fs_relay_job_t *j, fs_attempt_t a)
{
    static fs__limit_t limit;
    uint64_t suppressed;
    if (!fs__may_log(&limit, &suppressed)) return;
    char msg[420];
    fs_warn("relay_attempt_failed", "order_id=%s attempt=%d result=%s suppressed=%" PRIu64 " error=%s",
            j->order_id ? j->order_id : "", j->attempts, fs_attempt_name(a), suppressed,
            fs_log_quote(msg, sizeof msg, j->error));
}

static void fs__on_delivered(void *arg, const fs_deliver_result_t *res)
{
    fs_relay_job_t *j = arg;
    fs_relay_t *r = j->stream->sku->relay;
    fs_attempt_t a = fs__classify(res);
    if (res->err == FS_EIO && r->stopping == 2) {
        /* Cut off by a forced shutdown: not the receiver's fault; the entry stays pending. */
        fs__job_free(r, j);
        return;
    }
    r->metrics.attempts[a]++;
    fs_relay_hist_observe(&r->metrics.attempt_latency, res->duration_ns / 1000u);
    j->attempts++;
    if (a == FS_ATT_2XX) {
        fs__finish_ack(r, j);
        fs__dispatch(r);
        return;
    }
    if (res->err) snprintf(j->error, sizeof j->error, "%s", res->error);
    else fs__http_error(j->error, sizeof j->error, res);
    fs__log_failure(r, j, a);
    if (j->lost) {
        fs__job_free(r, j);
    } else if (a == FS_ATT_4XX) {
        fs__finish_dead(r, j, FS_DEAD_REJECTED, j->error);
    } else if (j->attempts >= r->cfg->max_attempts) {
        fs__finish_dead(r, j, FS_DEAD_MAX_ATTEMPTS, j->error);
    } else {
        uint64_t delay = fs__backoff_ms(r->cfg, j->attempts);
        if (res->err == 0 && res->retry_after_ms >= 0) {
            uint64_t ra = (uint64_t)res->retry_after_ms;
            if (ra > 3600000u) ra = 3600000u;
            if (ra > delay) delay = ra;
            /* The receiver is overloaded as a whole: hold every delivery, not just this one. */
            if (res->status == 429 || res->status == 503) {
                uint64_t until = fs_mono_ns() + ra * 1000000u;
                if (until > r->pause_until_ns) r->pause_until_ns = until;
            }
        }
        r->metrics.retried++;
        j->not_before_ns = fs_mono_ns() + delay * 1000000u;
        fs__finish_fail(r, j);
    }
    fs__dispatch(r);
}

static void fs__send(fs_relay_t *r, fs_relay_job_t *j)
{
    fs_buf_t h;
    fs_buf_init(&h);
    fs_buf_printf(&h, "Idempotency-Key: %s\r\nFlashsale-Delivery-Attempt: %d\r\n", j->order_id,
                  j->attempts + 1);
    fs_relay_sign(&h, fs_wall_ms() / 1000, j->body.data, j->body.len, r->secrets, r->secret_lens,
                  r->nsecrets);
    j->state = FS_JOB_SENDING;
    int rc = fs_deliver_post(r->deliver, h.data, j->body.data, j->body.len, fs__on_delivered, j);
    fs_assert(rc == FS_OK); /* fs__dispatch checked the in-flight bound */
    fs_buf_free(&h);
}

static void fs__on_dispatch_timer(uv_timer_t *t)
{
    fs__dispatch(t->data);
}

static void fs__dispatch(fs_relay_t *r)
{
    if (r->stopping) return;
    uint64_t now = fs_mono_ns();
    while (r->heap_len && r->heap[0]->not_before_ns <= now) {
        fs_relay_job_t *j = r->heap[0];
        fs__heap_remove(r, j);
        fs__make_ready(r, j);
    }
    uint64_t wake_ns = 0;
    if (now < r->pause_until_ns) {
        wake_ns = r->pause_until_ns;
    } else {
        while (r->ready_head && fs_deliver_in_flight(r->deliver) < (size_t)r->cfg->max_in_flight) {
            fs_relay_job_t *j = r->ready_head;
            r->ready_head = j->q_next;
            if (!r->ready_head) r->ready_tail = NULL;
            r->nready--;
            if (j->lost) {
                fs__job_free(r, j);
                continue;
            }
            fs__send(r, j);
        }
    }
    if (r->heap_len && (!wake_ns || r->heap[0]->not_before_ns < wake_ns))
        wake_ns = r->heap[0]->not_before_ns;
    r->dispatch_timer.data = r;
    if (wake_ns) {
        uint64_t ms = wake_ns > now ? (wake_ns - now + 999999u) / 1000000u : 0;
        uv_timer_start(&r->dispatch_timer, fs__on_dispatch_timer, ms, 0);
    } else {
        uv_timer_stop(&r->dispatch_timer);
    }
}

/* ---- shutdown ---- */

static void fs__on_abandoned(redisReply *reply, int err, void *arg)
{
    fs__batch_t *b = arg;
    fs_relay_t *r = b->r;
    r->ops_in_flight--;
    r->metrics.abandoned += b->n;
    for (size_t i = 0; i < b->n; i++) fs__job_free(r, b->jobs[i]);
    free(b);
    fs_relay_maybe_stopped(r);
}

/* Gives entries back: XCLAIM to ourselves with IDLE = claim_idle_ms, so that any relay's next
 * XAUTOCLAIM takes them at once. The jobs are freed when Redis answered (either way). */
static void fs__abandon(fs_relay_t *r, fs_relay_stream_t *s, fs_relay_job_t **jobs, size_t n)
{
    if (n == 0) return;
    fs__batch_t *b = fs_xmalloc(sizeof *b + n * sizeof b->jobs[0]);
    b->r = r;
    b->s = s;
    b->n = n;
    size_t argc = 8 + n;
    const char **argv = fs_xmalloc(argc * sizeof *argv);
    size_t *lens = fs_xmalloc(argc * sizeof *lens);
    char idle[24];
    snprintf(idle, sizeof idle, "%d", r->cfg->claim_idle_ms);
    size_t k = 0;
    argv[k++] = "XCLAIM";
    argv[k++] = s->key;
    argv[k++] = r->cfg->group;
    argv[k++] = r->consumer;
    argv[k++] = "0";
    for (size_t i = 0; i < n; i++) {
        b->jobs[i] = jobs[i];
        jobs[i]->state = FS_JOB_FINISHING;
        jobs[i]->fin = FS_FIN_NONE;
        argv[k++] = jobs[i]->id;
    }
    argv[k++] = "IDLE";
    argv[k++] = idle;
    argv[k++] = "JUSTID";
    for (size_t i = 0; i < k; i++) lens[i] = strlen(argv[i]);
    r->ops_in_flight++;
    fs_redis_command(r->writer, fs__on_abandoned, b, (int)k, argv, lens);
    free(argv);
    free(lens);
}

void fs_relay_jobs_abandon(fs_relay_t *r)
{
    uv_timer_stop(&r->dispatch_timer);
    /* Empty the ready queue and the heap; lost ones are simply dropped. */
    for (fs_relay_job_t *j = r->ready_head; j; j = j->q_next) j->state = FS_JOB_WAITING;
    r->ready_head = r->ready_tail = NULL;
    r->nready = 0;
    r->heap_len = 0;
    size_t ns = fs_relay_stream_count(r);
    for (size_t i = 0; i < ns; i++) {
        fs_relay_stream_t *s = fs_relay_stream_at(r, i);
        size_t n = 0, nlost = 0;
        fs_relay_job_t **list = fs_xmalloc((s->njobs + 1) * sizeof *list);
        fs_relay_job_t **lost = fs_xmalloc((s->njobs + 1) * sizeof *lost);
        for (fs_relay_job_t *j = s->jobs; j; j = j->stream_next) {
            if (j->state != FS_JOB_WAITING && j->state != FS_JOB_LOADING) continue;
            /* A lost entry belongs to another consumer now: XCLAIM would take it back. */
            if (j->lost) lost[nlost++] = j;
            else list[n++] = j;
        }
        fs__abandon(r, s, list, n);
        for (size_t k = 0; k < nlost; k++) fs__job_free(r, lost[k]);
        free(list);
        free(lost);
    }
}
