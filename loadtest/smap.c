/* String -> int64 hash map (see smap.h). FNV-1a hashing, capacity a power of two, load <= 1/2. */
#include "smap.h"
#include "common/log.h"

#include <stdlib.h>
#include <string.h>

void fs_smap_init(fs_smap_t *m)
{
    m->slots = NULL;
    m->cap = m->len = 0;
}

void fs_smap_free(fs_smap_t *m)
{
    for (size_t i = 0; i < m->cap; i++) free(m->slots[i].key);
    free(m->slots);
    fs_smap_init(m);
}

static uint64_t fs__hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static size_t fs__find(const fs_smap_t *m, const char *key, size_t n)
{
    size_t mask = m->cap - 1;
    size_t i = (size_t)fs__hash(key, n) & mask;
    while (m->slots[i].key) {
        if (strlen(m->slots[i].key) == n && memcmp(m->slots[i].key, key, n) == 0) return i;
        i = (i + 1) & mask;
    }
    return i;
}

static void fs__grow(fs_smap_t *m)
{
    fs_smap_t bigger = {.cap = m->cap ? m->cap * 2 : 64};
    bigger.slots = fs_xcalloc(bigger.cap, sizeof *bigger.slots);
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key) continue;
        size_t j = fs__find(&bigger, m->slots[i].key, strlen(m->slots[i].key));
        bigger.slots[j] = m->slots[i];
        bigger.len++;
    }
    free(m->slots);
    *m = bigger;
}

int64_t *fs_smap_upsert(fs_smap_t *m, const char *key, size_t n, int *created)
{
    if ((m->len + 1) * 2 > m->cap) fs__grow(m);
    size_t i = fs__find(m, key, n);
    if (created) *created = 0;
    if (!m->slots[i].key) {
        m->slots[i].key = fs_xstrndup(key, n);
        m->slots[i].value = 0;
        m->len++;
        if (created) *created = 1;
    }
    return &m->slots[i].value;
}

int64_t *fs_smap_get(const fs_smap_t *m, const char *key, size_t n)
{
    if (!m->cap) return NULL;
    size_t i = fs__find(m, key, n);
    return m->slots[i].key ? &m->slots[i].value : NULL;
}
