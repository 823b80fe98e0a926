/* Identifiers: validation of launch/SKU/user ids, random ids (OpenSSL RAND_bytes), base64url,
 * the opaque reservation id, and constant-time credential checks. */
#ifndef FS_IDS_H
#define FS_IDS_H

#include <stddef.h>
#include <stdint.h>

#define FS_ID_MAX 128
/* base64url of 1 + 1 + 128 + 1 + 128 + 16 bytes, unpadded (367 characters), and room for a
 * grouped id's ".1000". */
#define FS_RID_MAX 376
/* Most reservations in one group (fs_reserve_group call). */
#define FS_GROUP_MAX 1000

/* Launch and SKU ids: [A-Za-z0-9_.~-]{1,128}. Returns 1 if valid. */
int fs_id_valid(const char *s, size_t n);
/* User ids: 1..128 bytes, no ASCII control characters, valid UTF-8. Returns 1 if valid. */
int fs_user_valid(const char *s, size_t n);

/* Unpadded base64url. Encode writes ceil(4n/3) chars plus a NUL; returns the length. Decode returns
 * the decoded length or FS_EINVAL (bad character, bad length, or over cap). */
size_t fs_b64url_encode(const uint8_t *in, size_t n, char *out);
int fs_b64url_decode(const char *in, size_t n, uint8_t *out, size_t cap);

/* Fills buf with cryptographically random bytes from OpenSSL's generator, drawn through a
 * per-thread pool refilled 4 KiB at a time (one RAND_bytes call per 256 ids); aborts if OpenSSL
 * cannot. */
void fs_random_bytes(void *buf, size_t n);

/* A new reservation id for (launch, sku): base64url(1, len L, L, len S, S, 16 random bytes).
 * out must hold FS_RID_MAX + 1 bytes. Returns the length. */
size_t fs_rid_new(const char *launch, size_t ll, const char *sku, size_t sl, char *out);
/* A new group id for one fs_reserve_group call of (launch, sku): base64url(2, len L, L, len S, S,
 * 16 random bytes). Its reservations are "<group>.<i>", i = 1..FS_GROUP_MAX in decimal
 * (docs/redis.md, "Held reservations"). out must hold FS_RID_MAX + 1 bytes. Returns the length. */
size_t fs_group_new(const char *launch, size_t ll, const char *sku, size_t sl, char *out);
/* Decodes a reservation id, single or grouped. On success copies launch and sku (NUL-terminated,
 * each FS_ID_MAX + 1 bytes) and returns 0; returns FS_EINVAL for anything that is not a
 * well-formed id. */
int fs_rid_parse(const char *rid, size_t n, char *launch, char *sku);

/* A new order id: "o_" + base64url of 16 random bytes. out must hold 32 bytes. Returns the length. */
size_t fs_order_id_new(char *out);

/* A set of secrets compared in constant time (CRYPTO_memcmp against every secret of the same
 * length; only the length of a guess can be told apart by timing, never its content). */
typedef struct {
    struct fs_secret {
        char *p;
        size_t n;
    } *items;
    size_t count;
} fs_secret_set_t;

/* Adds every non-empty comma-separated item of csv (spaces around items are trimmed). */
void fs_secret_set_add_csv(fs_secret_set_t *set, const char *csv);
/* Returns the index of the matching secret, or -1. The time taken does not depend on which secret
 * matched or how much of it did. */
int fs_secret_set_match(const fs_secret_set_t *set, const char *token, size_t n);
void fs_secret_set_free(fs_secret_set_t *set);

#endif
