/* Connection limits shared by every event loop of a process (see http.h): how many connections
 * are open in all, and per client address (the socket peer, 16 bytes as in client_addr.c).
 *
 * One mutex guards a chained hash table of address -> open count. It is taken twice per
 * connection (accept, close), never per request. The hash is seeded at random so that a client
 * choosing its (IPv6) addresses cannot aim them all at one chain. */
#include "http.h"
#include "../common/ids.h"
#include "../common/log.h"

#include <stdlib.h>
#include <string.h>

typedef struct fs__addr_count {
    struct fs__addr_count *next;
    uint8_t addr[16];
    size_t n;
} fs__addr_count_t;

struct fs_http_limits {
    uv_mutex_t mu;
    size_t max_total, max_per_addr;
    size_t total;
    fs__addr_count_t **buckets; /* nbuckets, a power of two */
    size_t nbuckets, nentries;
    uint64_t seed[2];
};

fs_http_limits_t *fs_http_limits_new(size_t max_connections, size_t max_per_addr)
{
    fs_http_limits_t *l = fs_xcalloc(1, sizeof *l);
    fs_assert(uv_mutex_init(&l->mu) == 0);
    l->max_total = max_connections;
    l->max_per_addr = max_per_addr;
    l->nbuckets = 1024;
    l->buckets = fs_xcalloc(l->nbuckets, sizeof *l->buckets);
    fs_random_bytes(l->seed, sizeof l->seed);
    return l;
}

void fs_http_limits_free(fs_http_limits_t *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->nbuckets; i++)
        for (fs__addr_count_t *e = l->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(l->buckets);
    uv_mutex_destroy(&l->mu);
    free(l);
}

static size_t fs__hash(const fs_http_limits_t *l, const uint8_t a[16])
{
    uint64_t x, y;
    memcpy(&x, a, 8);
    memcpy(&y, a + 8, 8);
    uint64_t h = (x ^ l->seed[0]) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 29;
    h = (h ^ y ^ l->seed[1]) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return (size_t)h;
}

static void fs__grow(fs_http_limits_t *l)
{
    size_t nb = l->nbuckets * 2;
    fs__addr_count_t **b = fs_xcalloc(nb, sizeof *b);
    for (size_t i = 0; i < l->nbuckets; i++)
        for (fs__addr_count_t *e = l->buckets[i], *next; e; e = next) {
            next = e->next;
            size_t k = fs__hash(l, e->addr) & (nb - 1);
            e->next = b[k];
            b[k] = e;
        }
    free(l->buckets);
    l->buckets = b;
    l->nbuckets = nb;
}

int fs_http_limits_enter(fs_http_limits_t *l, const uint8_t addr[16])
{
    int rc = 0;
    uv_mutex_lock(&l->mu);
    fs__addr_count_t **slot = &l->buckets[fs__hash(l, addr) & (l->nbuckets - 1)], *e = *slot;
    while (e && memcmp(e->addr, addr, 16) != 0) e = e->next;
    if (l->total >= l->max_total) {
        rc = 1;
    } else if (e && e->n >= l->max_per_addr) {
        rc = 2;
    } else {
        if (!e) {
            e = fs_xcalloc(1, sizeof *e);
            memcpy(e->addr, addr, 16);
            e->next = *slot;
            *slot = e;
            if (++l->nentries > l->nbuckets * 2) fs__grow(l);
        }
        e->n++;
        l->total++;
    }
    uv_mutex_unlock(&l->mu);
    return rc;
}

void fs_http_limits_leave(fs_http_limits_t *l, const uint8_t addr[16])
{
    uv_mutex_lock(&l->mu);
    fs__addr_count_t **pp = &l->buckets[fs__hash(l, addr) & (l->nbuckets - 1)];
    while (*pp && memcmp((*pp)->addr, addr, 16) != 0) pp = &(*pp)->next;
    fs_assert(*pp && (*pp)->n > 0 && l->total > 0);
    l->total--;
    if (--(*pp)->n == 0) {
        fs__addr_count_t *e = *pp;
        *pp = e->next;
        free(e);
        l->nentries--;
    }
    uv_mutex_unlock(&l->mu);
}

size_t fs_http_limits_open(fs_http_limits_t *l, const uint8_t *addr)
{
    size_t n = 0;
    uv_mutex_lock(&l->mu);
    if (!addr) {
        n = l->total;
    } else {
        fs__addr_count_t *e = l->buckets[fs__hash(l, addr) & (l->nbuckets - 1)];
        while (e && memcmp(e->addr, addr, 16) != 0) e = e->next;
        n = e ? e->n : 0;
    }
    uv_mutex_unlock(&l->mu);
    return n;
}
