/* Verification of a rehearsed launch: what the operator API says and what the order streams in
 * Redis hold must agree with each other, with the campaign and with what the tool was told.
 *
 * Invariants (each PASS or FAIL with a detail line):
 *   counters_add_up     per SKU (operator API): available + held + sold == total, none negative,
 *                       total == the stock the campaign created
 *   nothing_oversold    per SKU: sold <= stock, the units in the order stream == sold <= stock,
 *                       and the units the tool saw confirmed <= stock
 *   per_user_limit      per SKU and shopper: units in the order stream <= per_user_limit
 *   orders_exactly_once every stream entry has a unique order_id and reservation_id, names this
 *                       launch and SKU, and is a reservation the server gave this tool (no order
 *                       nobody placed)
 *   told_orders_present every order the tool got a confirmation for is in its SKU's stream with
 *                       the same reservation, shopper and quantity
 *
 * Redis is read with a blocking hiredis connection (XRANGE in pages) after the run. */
#ifndef FS_LOAD_VERIFY_H
#define FS_LOAD_VERIFY_H

#include "campaign.h"
#include "smap.h"

#include <jansson.h>
#include <stdio.h>

typedef struct {
    char *order_id;
    char *rid;
    char *user;
    int sku;       /* index into the campaign's SKUs */
    int qty;
} fs_known_order_t;

typedef struct {
    const char *launch;
    const fs_campaign_t *campaign;
    const json_t *admin;          /* body of GET /admin/v1/launches/{launch}, NULL if unavailable */
    const char *admin_error;      /* why admin is NULL */
    const fs_known_order_t *orders;
    size_t norders;
    const fs_smap_t *reserved;    /* reservation ids the server gave (201), value = SKU index */
    const char *redis_host;
    int redis_port, redis_db;
    const char *redis_user, *redis_password; /* AUTH when the password is not empty */
} fs_verify_in_t;

#define FS_VERIFY_N 5

typedef struct {
    const char *name;
    int passed;
    char detail[600];
} fs_invariant_t;

typedef struct {
    fs_invariant_t inv[FS_VERIFY_N];
    int passed;                    /* all of them */
    long long stream_orders[FS_CAMPAIGN_MAX_SKUS];
    long long stream_units[FS_CAMPAIGN_MAX_SKUS];
} fs_verify_out_t;

void fs_verify_run(const fs_verify_in_t *in, fs_verify_out_t *out);
json_t *fs_verify_json(const fs_verify_out_t *v);
void fs_verify_print(FILE *f, const fs_verify_out_t *v);

#endif
