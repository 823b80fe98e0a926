/* Internals of campaign mode shared by shop.c (the run) and shop_report.c (its summary and
 * report document). Not for other modules: they use shop.h. */
#ifndef FS_LOAD_SHOP_INTERNAL_H
#define FS_LOAD_SHOP_INTERNAL_H

#include "pacer.h"
#include "progress.h"
#include "shop.h"
#include "smap.h"
#include "stats.h"
#include "verify.h"
#include "flashsale/http_client.h"

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

typedef enum { FS__RESERVE, FS__CONFIRM, FS__CANCEL } fs__op_type_t;

typedef struct fs__op {
    struct fs__op *next;     /* ready FIFO */
    fs__op_type_t type;
    int sku, qty, attempt;
    uint64_t shopper;
    uint64_t intended_ns;    /* latency origin of the current attempt */
    char *rid;               /* confirm/cancel */
    char idem[48];           /* reservation's Idempotency-Key: the same for every retry */
} fs__op_t;

typedef struct fs__shop fs__shop_t;

typedef struct {
    fs__shop_t *shop;
    fs_http_client_t *client;
    fs__op_t *op;            /* in flight, or NULL */
    char *headers;           /* Authorization + Content-Type lines */
    int index;
} fs__conn_t;

typedef struct {
    uint64_t due_ns;
    fs__op_t *op;
} fs__timed_t;

typedef struct {
    long long available, held, sold, total;
    double first_sold_out_s;   /* first sold_out answer, -1 = none */
    double available_zero_s;   /* first poll with available == 0 */
    double all_sold_s;         /* first poll with sold == total */
    long long told_units, told_orders;
} fs__sku_state_t;

struct fs__shop {
    const fs_shop_opts_t *o;
    const fs_campaign_t *c;
    uv_loop_t loop;
    char launch[160];
    fs__conn_t *conns;
    int nconns;
    int *free_conns, nfree;
    fs_http_client_t *admin;
    char *admin_headers;
    fs_pacer_t pacer;
    uv_timer_t tick, open_timer;
    fs__timed_t *heap;
    size_t heap_len, heap_cap;
    fs__op_t *ready_head, *ready_tail;
    size_t ready_len;
    uint64_t start_ns, arrivals_end_ns, deadline_ns;
    uint64_t next_k, arrivals;
    long sec;
    int finished, opened, open_sent, poll_busy;
    uint64_t rng;
    double wsum;
    fs_stats_t stats;
    fs_timeline_t tl;
    fs_progress_t progress;
    fs__sku_state_t sku[FS_CAMPAIGN_MAX_SKUS];
    json_t *stock_series;
    fs_known_order_t *orders;
    size_t norders, orders_cap;
    fs_smap_t reserved;
    uint64_t in_flight, unfinished, payment_seq;
    uint64_t max_lag_ns, late_arrivals;   /* arrivals sent after their intended time (> 100 ms) */
    int progress_pending;                 /* a second ended; print once its stock poll answers */
    double open_at_s;
};

/* Prints the terminal summary (and the verification when v is not NULL). */
void fs__shop_print_summary(fs__shop_t *s, double elapsed, const fs_verify_out_t *v);
/* Builds the report document (a new reference); takes over s->stock_series. */
json_t *fs__shop_report_doc(fs__shop_t *s, double elapsed, const fs_verify_out_t *v);

#endif
