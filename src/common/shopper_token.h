/* Signed shopper tokens: a storefront that lets browsers call us directly gives each shopper a
 * token instead of our API key; the server then takes the shopper id from the token.
 *
 *   token = B64(user_id) "." EXP "." B64(HMAC-SHA256(secret, B64(user_id) "." EXP))
 *
 * B64 is unpadded base64url, EXP the expiry in Unix seconds (decimal digits); the token is valid
 * while now < EXP. The HMAC key is the secret's bytes as configured. See docs/abuse.md. */
#ifndef FS_SHOPPER_TOKEN_H
#define FS_SHOPPER_TOKEN_H

#include <stddef.h>
#include <stdint.h>

/* Longest token: B64 of a 128-byte user id (171) + "." + 19 digits + "." + B64 of 32 bytes (43). */
#define FS_SHOPPER_TOKEN_MAX 235

/* Failures of fs_shopper_token_verify (negative, apart from the FS_E* codes). */
enum {
    FS_SHOPPER_MALFORMED = -100, /* not three parts of the right alphabet and sizes */
    FS_SHOPPER_FORGED = -101,    /* the signature does not match (wrong secret or altered token) */
    FS_SHOPPER_EXPIRED = -102,   /* signed by us, but EXP has passed */
};

/* Writes the token for user (1..128 bytes, fs_user_valid) expiring at exp into out, which must
 * hold FS_SHOPPER_TOKEN_MAX + 1 bytes; returns its length, or FS_EINVAL for a bad user or exp. */
int fs_shopper_token_sign(const char *secret, size_t secret_len, const char *user, size_t user_len,
                          int64_t exp, char *out);

/* Checks a token at time now (Unix seconds). On success copies the user id into user (which must
 * hold 129 bytes; NUL-terminated), sets *user_len and *exp when not NULL, and returns 0. Otherwise
 * returns FS_SHOPPER_MALFORMED, FS_SHOPPER_FORGED or FS_SHOPPER_EXPIRED. The signature is compared
 * with CRYPTO_memcmp, and expiry is only looked at once the signature matched (a forged token is
 * "forged" whatever its EXP). */
int fs_shopper_token_verify(const char *secret, size_t secret_len, const char *tok, size_t n,
                            int64_t now, char *user, size_t *user_len, int64_t *exp);

/* A short message for a verify failure ("shopper token is malformed", ...). Never the token. */
const char *fs_shopper_token_strerror(int rc);

#endif
