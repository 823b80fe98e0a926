/* Signed shopper tokens (see shopper_token.h): HMAC-SHA256 with OpenSSL, constant-time compare. */
#include "shopper_token.h"
#include "flashsale/error.h"
#include "ids.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#define FS__MAC_LEN 32
#define FS__MAC_B64 43 /* unpadded base64url of 32 bytes */
#define FS__EXP_DIGITS 19

static void fs__mac(const char *secret, size_t sl, const char *msg, size_t n, uint8_t mac[FS__MAC_LEN])
{
    unsigned int len = 0;
    /* HMAC() with an empty key would still work; the server refuses an empty secret anyway. */
    HMAC(EVP_sha256(), secret, (int)sl, (const unsigned char *)msg, n, mac, &len);
}

int fs_shopper_token_sign(const char *secret, size_t secret_len, const char *user, size_t user_len,
                          int64_t exp, char *out)
{
    if (!fs_user_valid(user, user_len) || exp < 0) return FS_EINVAL;
    size_t n = fs_b64url_encode((const uint8_t *)user, user_len, out);
    n += (size_t)snprintf(out + n, FS_SHOPPER_TOKEN_MAX + 1 - n, ".%lld", (long long)exp);
    uint8_t mac[FS__MAC_LEN];
    fs__mac(secret, secret_len, out, n, mac);
    out[n++] = '.';
    n += fs_b64url_encode(mac, sizeof mac, out + n);
    OPENSSL_cleanse(mac, sizeof mac);
    return (int)n;
}

int fs_shopper_token_verify(const char *secret, size_t secret_len, const char *tok, size_t n,
                            int64_t now, char *user, size_t *user_len, int64_t *exp_out)
{
    if (n > FS_SHOPPER_TOKEN_MAX) return FS_SHOPPER_MALFORMED;
    const char *dot1 = memchr(tok, '.', n);
    if (!dot1) return FS_SHOPPER_MALFORMED;
    const char *dot2 = memchr(dot1 + 1, '.', n - (size_t)(dot1 + 1 - tok));
    if (!dot2) return FS_SHOPPER_MALFORMED;
    size_t ul = (size_t)(dot1 - tok), el = (size_t)(dot2 - dot1 - 1), ml = n - (size_t)(dot2 + 1 - tok);
    if (ul == 0 || el == 0 || el > FS__EXP_DIGITS || ml != FS__MAC_B64) return FS_SHOPPER_MALFORMED;
    int64_t exp = 0;
    for (size_t i = 0; i < el; i++) {
        char ch = dot1[1 + i];
        if (ch < '0' || ch > '9') return FS_SHOPPER_MALFORMED;
        if (exp > (INT64_MAX - (ch - '0')) / 10) return FS_SHOPPER_MALFORMED;
        exp = exp * 10 + (ch - '0');
    }
    uint8_t given[FS__MAC_LEN + 2], want[FS__MAC_LEN];
    if (fs_b64url_decode(dot2 + 1, ml, given, sizeof given) != FS__MAC_LEN) return FS_SHOPPER_MALFORMED;
    uint8_t raw[FS_ID_MAX + 3];
    int rl = fs_b64url_decode(tok, ul, raw, FS_ID_MAX);
    if (rl < 0) return FS_SHOPPER_MALFORMED;
    /* Signature first, in constant time; nothing about the token is believed before it matches. */
    fs__mac(secret, secret_len, tok, (size_t)(dot2 - tok), want);
    int same = CRYPTO_memcmp(given, want, FS__MAC_LEN) == 0;
    OPENSSL_cleanse(want, sizeof want);
    if (!same) return FS_SHOPPER_FORGED;
    if (now >= exp) return FS_SHOPPER_EXPIRED;
    /* Signed by us but not a valid user id: only a signer bug can get here; refuse it all the same. */
    if (!fs_user_valid((const char *)raw, (size_t)rl)) return FS_SHOPPER_MALFORMED;
    memcpy(user, raw, (size_t)rl);
    user[rl] = 0;
    *user_len = (size_t)rl;
    if (exp_out) *exp_out = exp;
    return FS_OK;
}

const char *fs_shopper_token_strerror(int rc)
{
    switch (rc) {
    case FS_OK: return "ok";
    case FS_SHOPPER_FORGED: return "shopper token signature does not match";
    case FS_SHOPPER_EXPIRED: return "shopper token has expired";
    default: return "shopper token is malformed";
    }
}
