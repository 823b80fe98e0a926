/* flashsale-relay's core, shared by its modules (internal to src/relay).
 *
 * The relay follows, for every SKU of every launch, two streams through one consumer group:
 * `fs:{L:S}:orders` (written by the server's fs_confirm) and `fs:{L:S}:replay` (dead letters sent
 * back by an operator). Each entry it reads or takes over becomes a job: the entry stays in the
 * group's pending list, owned by this relay, until the job ends with XACK (delivered, or moved to
 * the dead-letter stream in the same Function call). A crash leaves the entries pending; another
 * relay (or this one restarted) takes them over with XAUTOCLAIM once they have been idle for
 * claim_idle_ms. While a job lives, a heartbeat resets its idle time so nobody else takes it.
 *
 *   streams.c  discovery of SKUs, consumer groups, reading (XREADGROUP), take-over (XAUTOCLAIM,
 *              own pending entries after a restart), heartbeat, lag
 *   jobs.c     the job table, scheduling (ready queue, retry heap, in-flight bound), delivery,
 *              outcomes (ack, retry with backoff, dead letter), abandoning on shutdown
 *   payload.c  the JSON body of a delivery and its signature
 *   admin.c    /healthz, /readyz, /metrics and the dead-letter endpoints
 *   relay_metrics.c  counters and histograms in Prometheus text format
 *   main.c     configuration, wiring, signals, graceful shutdown
 *
 * One process, one libuv loop, one thread: nothing here is locked. Several relays share the work
 * through the consumer group. */
#ifndef FS_RELAY_H
#define FS_RELAY_H

#include "deliver.h"
#include "relay_config.h"
#include "relay_metrics.h"
#include "../common/buf.h"
#include "../common/ids.h"
#include "../http/http.h"
#include "../redis/redis.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct fs_relay fs_relay_t;
typedef struct fs_relay_sku fs_relay_sku_t;
typedef struct fs_relay_job fs_relay_job_t;
typedef struct fs_relay_stream fs_relay_stream_t;

/* One stream followed through the group. Owned by its SKU. */
struct fs_relay_stream {
    fs_relay_sku_t *sku;
    int replay;              /* 0: fs:{L:S}:orders, 1: fs:{L:S}:replay */
    char *key;
    size_t key_len;
    int group_ready;         /* XGROUP CREATE answered OK or BUSYGROUP */
    int creating;            /* XGROUP CREATE in flight */
    int own_done;            /* this consumer's own pending entries were re-read after start */
    char own_cursor[48];     /* where that re-reading goes on */
    char claim_cursor[48];   /* XAUTOCLAIM cursor ("0-0" = from the start) */
    fs_relay_job_t *jobs;    /* jobs of this stream (doubly linked through stream_prev/next) */
    size_t njobs;
    fs_relay_job_t *acks;    /* delivered jobs waiting for their XACK to be sent */
    int ack_dirty;           /* on the relay's list of streams with acks to send */
    fs_relay_stream_t *next_dirty;
};

/* One SKU of one launch. Allocated when discovered, freed with the relay. */
struct fs_relay_sku {
    fs_relay_t *relay;
    char launch[FS_ID_MAX + 1];
    char sku[FS_ID_MAX + 1];
    char *delivery_key;      /* fs:{L:S}:delivery */
    char *dead_key;          /* fs:{L:S}:dead */
    fs_relay_stream_t orders, replay;
};

typedef enum {
    FS_JOB_LOADING,    /* taken over: its attempt count is being read */
    FS_JOB_READY,      /* in the ready queue */
    FS_JOB_SENDING,    /* an HTTP request is in flight */
    FS_JOB_WAITING,    /* in the retry heap until not_before */
    FS_JOB_FINISHING,  /* ack / fail / dead-letter command in flight or queued */
} fs_job_state_t;

/* What a finishing job is waiting for. */
typedef enum { FS_FIN_NONE, FS_FIN_ACK, FS_FIN_FAIL, FS_FIN_DEAD } fs_fin_t;

/* One held entry. Allocated by fs_relay_job_add, freed by jobs.c when it ends. */
struct fs_relay_job {
    fs_relay_stream_t *stream;
    fs_relay_job_t *stream_prev, *stream_next;
    fs_relay_job_t *hash_next;
    fs_relay_job_t *q_next;          /* ready queue, ack list or finish-retry list */
    size_t heap_idx;                 /* in the retry heap while WAITING */
    fs_job_state_t state;
    fs_fin_t fin;
    char id[48];                     /* stream entry id */
    int64_t id_ms;                   /* its time part: when the order was written */
    char *order_id;
    fs_buf_t body;                   /* the JSON payload (empty when malformed) */
    char *malformed;                 /* why the entry cannot be delivered, or NULL */
    int attempts;                    /* attempts made so far (persisted in the delivery hash) */
    uint64_t not_before_ns;          /* WAITING: when to try again */
    int lost;                        /* another consumer took it over meanwhile */
    int abandon;                     /* shutting down: give it back instead of retrying */
    int dead_kind;                   /* fs_dead_t, when fin is FS_FIN_DEAD */
    char error[384];                 /* last error, for the delivery hash and dead letters */
};

struct fs_relay {
    uv_loop_t *loop;
    const fs_relay_config_t *cfg;
    char consumer[160];
    /* signing secrets */
    char **secrets;
    size_t *secret_lens;
    size_t nsecrets;
    fs_secret_set_t admin_tokens;
    /* I/O */
    fs_redis_t *reader;               /* XREADGROUP ... BLOCK only */
    fs_redis_t *writer;               /* everything else */
    fs_deliver_t *deliver;
    fs_http_server_t *http;
    fs_relay_metrics_t metrics;
    /* SKUs and streams */
    fs_relay_sku_t **skus;
    size_t nskus, skus_cap;
    size_t ngroups_ready;
    int discovering, reading, claiming, touching, lag_in_flight;
    size_t claim_pos;                 /* stream index of the claim pass in progress */
    int claim_calls;                  /* XAUTOCLAIM calls on that stream in this pass */
    uint64_t last_claim_ns;
    /* jobs */
    fs_relay_job_t **table;           /* hash of (stream, id) */
    size_t table_cap, njobs;
    fs_relay_job_t *ready_head, *ready_tail;
    size_t nready;
    fs_relay_job_t **heap;            /* WAITING jobs by not_before_ns */
    size_t heap_len, heap_cap;
    fs_relay_job_t *fin_retry;        /* FINISHING jobs whose command failed: sent again later */
    fs_relay_stream_t *dirty;         /* streams with acks to send */
    uint64_t pause_until_ns;          /* the receiver asked us to wait (Retry-After) */
    size_t ops_in_flight;             /* finishing and abandon commands sent, not answered */
    /* timers */
    uv_timer_t dispatch_timer;        /* next retry, end of a pause */
    uv_timer_t ack_timer;             /* 0 ms: sends queued acks on the next loop turn */
    uv_timer_t tick_timer;            /* discovery, claims, heartbeat, lag, finish retries */
    uv_timer_t read_timer;            /* read again after an error */
    uv_timer_t force_timer;           /* shutdown deadline */
    uint64_t next_discover_ns, next_touch_ns, next_lag_ns, next_fin_retry_ns;
    int stopping;                     /* 1: draining, 2: closed */
    void (*on_stopped)(void *arg);
    void *stopped_arg;
};

/* ---- streams.c ---- */
/* Starts discovery, reading and the periodic work. */
void fs_relay_streams_start(fs_relay_t *r);
/* Called by jobs.c when capacity was freed: reads more if a read is not already in flight. */
void fs_relay_streams_kick(fs_relay_t *r);
/* The periodic work (tick timer): discovery, claims, heartbeat, lag. */
void fs_relay_streams_tick(fs_relay_t *r, uint64_t now_ns);
/* A stream key of a known SKU (replay: the replay stream), or NULL. */
fs_relay_stream_t *fs_relay_stream_find(fs_relay_t *r, const char *key, size_t len);
size_t fs_relay_stream_count(const fs_relay_t *r);
fs_relay_stream_t *fs_relay_stream_at(fs_relay_t *r, size_t i);
/* Redis key of one SKU: fs:{L:S}:<suffix>, into out (cap >= 300). Returns its length. */
size_t fs_relay_key(char *out, size_t cap, const char *launch, const char *sku, const char *suffix);

/* ---- jobs.c ---- */
void fs_relay_jobs_init(fs_relay_t *r);
void fs_relay_jobs_free(fs_relay_t *r);
/* Number of jobs held (every state). */
size_t fs_relay_jobs_held(const fs_relay_t *r);
/* Adds a job for an entry read from a stream (fields: flat name/value reply elements, or NULL
 * for an entry that no longer exists). Returns NULL when this relay already holds that entry (a
 * duplicate read), else the job in state LOADING (taken over, attempts unknown) or READY. */
fs_relay_job_t *fs_relay_job_add(fs_relay_t *r, fs_relay_stream_t *s, const char *id, size_t idlen,
                                 const redisReply *fields, int taken_over);
/* Taken-over jobs: their attempt count and last attempt time are known now. */
void fs_relay_job_loaded(fs_relay_t *r, fs_relay_job_t *j, int attempts, int64_t last_ms);
/* The heartbeat says another consumer holds the entry now. */
void fs_relay_job_lost(fs_relay_t *r, fs_relay_job_t *j);
fs_relay_job_t *fs_relay_job_find(fs_relay_t *r, fs_relay_stream_t *s, const char *id, size_t len);
/* Retries finishing commands that failed (called by the tick). */
void fs_relay_jobs_retry_finishing(fs_relay_t *r);
/* Shutdown: gives back every job that is not in flight (XCLAIM ... IDLE so that other relays can
 * take it at once) and lets the in-flight ones finish. */
void fs_relay_jobs_abandon(fs_relay_t *r);
/* True once nothing is in flight (deliveries and finishing commands). */
int fs_relay_jobs_quiet(const fs_relay_t *r);

/* ---- payload.c ---- */
/* Builds the JSON body of an order from its stream fields. Returns 0, or FS_EINVAL with the
 * reason in why (e.g. "field qty is not an integer"). order_id receives a copy of the id. */
int fs_relay_payload(const redisReply *fields, fs_buf_t *body, char **order_id, char *why,
                     size_t whycap);
/* Appends "Flashsale-Signature: t=<t>,v1=<hex>[,v1=<hex>...]\r\n" for body (one v1 per secret). */
void fs_relay_sign(fs_buf_t *headers, int64_t t, const char *body, size_t len, char *const *secrets,
                   const size_t *secret_lens, size_t nsecrets);

/* ---- admin.c ---- */
void fs_relay_admin_handle(fs_http_req_t *req, void *user);

/* ---- main.c ---- */
/* Called when a drain finished: closes what is left. */
void fs_relay_maybe_stopped(fs_relay_t *r);

#endif
