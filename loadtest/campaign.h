/* Campaign files: an INI description of a launch-day rehearsal (every key is documented in
 * docs/loadtest.md; loadtest/campaigns/ has examples).
 *
 *   [campaign]  name, duration, connections, drain, seed
 *   [launch]    id, name, hold_seconds, unique_id, open_after, close_at_end
 *   [sku ID]    stock, per_user_limit, price_cents, weight          (one section per SKU)
 *   [shoppers]  count, id_prefix, qty, pick
 *   [behaviour] confirm, cancel, think_min, think_max, max_retries, backoff, backoff_max,
 *               retry_not_open, idempotency
 *   [profile]   phase = ramp FROM TO DUR | plateau RATE DUR | spike RATE DUR | pause DUR  (repeated)
 *
 * Errors name the file, the line and the field: "smoke.ini:12: [sku black] stock: must be an
 * integer from 1 to 100000000".
 *
 * Ownership: fs_campaign_load fills a caller-owned struct; fs_campaign_free releases what it
 * allocated. */
#ifndef FS_LOAD_CAMPAIGN_H
#define FS_LOAD_CAMPAIGN_H

#include "rate.h"

#include <stddef.h>
#include <stdint.h>

#define FS_CAMPAIGN_MAX_SKUS 64

typedef struct {
    char id[129];
    long long stock;
    int per_user_limit;
    long long price_cents;
    double weight;            /* share of shoppers who want this SKU (relative) */
    int line;                 /* where its section starts */
    int have_stock, have_limit, have_price;
} fs_campaign_sku_t;

typedef enum { FS_PICK_RANDOM, FS_PICK_SEQUENTIAL } fs_pick_t;

typedef struct {
    char name[200];
    /* [launch] */
    char launch_id[129];
    char launch_name[200];
    int hold_seconds;
    int unique_id;            /* append "-<UTC yyyymmddhhmmss>-<4 hex>": every run gets a fresh launch */
    double open_after_s;      /* open the launch this long after the first arrival */
    int close_at_end;
    /* [sku ...] */
    fs_campaign_sku_t skus[FS_CAMPAIGN_MAX_SKUS];
    size_t nskus;
    /* [shoppers] */
    long long shoppers;
    char shopper_prefix[64];
    int qty_min, qty_max;
    fs_pick_t pick;
    /* [behaviour] */
    double p_confirm, p_cancel;
    double think_min_s, think_max_s;
    int max_retries;
    double backoff_s, backoff_max_s;
    int retry_not_open;
    int idempotency; /* send an Idempotency-Key with each reservation (default on) */
    /* [profile] */
    fs_rate_profile_t profile;
    /* [campaign] run settings */
    double duration_s;        /* arrivals stop at this time (default: the profile's length) */
    double drain_s;           /* after that, at most this long for pending confirms/cancels */
    int connections;
    unsigned long long seed;
} fs_campaign_t;

/* Parses a campaign file. Returns 0, or FS_EINVAL with "file:line: [section] key: problem" (or
 * "file: [section] key: problem" for a missing key) in err. */
int fs_campaign_load(fs_campaign_t *c, const char *path, char *err, size_t errcap);
/* The same from a string; `name` stands for the file name in messages. */
int fs_campaign_parse(fs_campaign_t *c, const char *text, const char *name, char *err,
                      size_t errcap);
void fs_campaign_free(fs_campaign_t *c);

#endif
