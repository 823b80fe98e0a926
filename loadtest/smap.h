/* A string -> int64 hash map (open addressing, linear probing) for the verification's
 * bookkeeping: ids seen, units per shopper. Keys are copied.
 *
 * Ownership: the caller owns the fs_smap_t; fs_smap_free releases keys and slots. */
#ifndef FS_LOAD_SMAP_H
#define FS_LOAD_SMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *key;      /* NULL = empty slot */
    int64_t value;
} fs_smap_slot_t;

typedef struct {
    fs_smap_slot_t *slots;
    size_t cap, len;
} fs_smap_t;

void fs_smap_init(fs_smap_t *m);
void fs_smap_free(fs_smap_t *m);
/* The slot of key, created with value 0 when absent (*created set to 1 then). Never NULL. */
int64_t *fs_smap_upsert(fs_smap_t *m, const char *key, size_t n, int *created);
/* The value's address, or NULL when absent. */
int64_t *fs_smap_get(const fs_smap_t *m, const char *key, size_t n);

#endif
