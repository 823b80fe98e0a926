/* flashsale-sign-shopper USER_ID [--ttl SECONDS]: prints a shopper token for USER_ID signed with
 * FLASHSALE_SHOPPER_SECRET, valid for SECONDS (default 3600) from now. Exit 0 with the token on
 * stdout; 1 without a secret; 2 on a usage error. The secret is never printed. */
#include "common/shopper_token.h"
#include "flashsale/version.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void fs__usage(FILE *f)
{
    fprintf(f,
            "usage: flashsale-sign-shopper USER_ID [--ttl SECONDS]\n"
            "\n"
            "Prints a shopper token (X-Shopper-Token) for USER_ID, signed with the secret in\n"
            "FLASHSALE_SHOPPER_SECRET and valid for SECONDS (default 3600, at most 31536000).\n"
            "Token: B64(user_id) \".\" EXP \".\" B64(HMAC-SHA256(secret, B64(user_id) \".\" EXP)),\n"
            "B64 = unpadded base64url, EXP = expiry in Unix seconds. See docs/abuse.md.\n");
}

int main(int argc, char **argv)
{
    const char *user = NULL;
    long ttl = 3600;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fs__usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("flashsale-sign-shopper %s\n", FS_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--ttl") == 0 || strncmp(argv[i], "--ttl=", 6) == 0) {
            const char *v = argv[i][5] == '=' ? argv[i] + 6 : (i + 1 < argc ? argv[++i] : NULL);
            char *end;
            errno = 0;
            ttl = v ? strtol(v, &end, 10) : -1;
            if (!v || errno || end == v || *end || ttl < 1 || ttl > 31536000) {
                fprintf(stderr, "flashsale-sign-shopper: --ttl must be a number of seconds from 1 to 31536000\n");
                return 2;
            }
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "flashsale-sign-shopper: unknown option %s\n", argv[i]);
            fs__usage(stderr);
            return 2;
        } else if (!user) {
            user = argv[i];
        } else {
            fprintf(stderr, "flashsale-sign-shopper: unexpected argument %s\n", argv[i]);
            fs__usage(stderr);
            return 2;
        }
    }
    if (!user) {
        fs__usage(stderr);
        return 2;
    }
    const char *secret = getenv("FLASHSALE_SHOPPER_SECRET");
    if (!secret || !*secret) {
        fprintf(stderr, "flashsale-sign-shopper: FLASHSALE_SHOPPER_SECRET is not set\n");
        return 1;
    }
    char tok[FS_SHOPPER_TOKEN_MAX + 1];
    int n = fs_shopper_token_sign(secret, strlen(secret), user, strlen(user), (int64_t)time(NULL) + ttl, tok);
    if (n < 0) {
        fprintf(stderr, "flashsale-sign-shopper: USER_ID must be 1 to 128 bytes without control characters\n");
        return 2;
    }
    printf("%s\n", tok);
    return 0;
}
