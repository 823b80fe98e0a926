/* The audit stream of operator actions: one Redis stream per launch, `fs:audit:{L}` (layout in
 * docs/redis.md, "Stats and audit"), written after every operator change that took effect and read
 * by GET /admin/v1/launches/{launch}/audit. Entries name the operator token, never the token. */
#ifndef FS_AUDIT_H
#define FS_AUDIT_H

#include "../redis/redis.h"
#include "../stock/stock.h"

#include <stddef.h>

#define FS_AUDIT_MAXLEN "10000" /* entries kept per launch (XADD MAXLEN ~) */

/* One entry. Strings are NUL-terminated except before/after, which are JSON texts of the given
 * lengths (len 0 writes "null"); detail is a JSON text or NULL. */
typedef struct {
    const char *launch, *action, *who, *role, *sku; /* sku may be NULL */
    const char *before, *after, *detail;
    size_t before_len, after_len;
} fs_audit_entry_t;

/* XADDs the entry with the server's wall-clock time (`at`). cb fires exactly once (see
 * fs_redis_cb); strings are copied before the call returns. */
void fs_audit_write(fs_stock_t *st, const fs_audit_entry_t *e, fs_redis_cb cb, void *arg);

#endif
