/* Campaign mode: rehearse a launch against a real flashsale-server.
 *
 * fs_shop_run creates the campaign's launch through the operator API, opens it, drives shoppers
 * at the campaign's rate profile (reserve; then confirm, cancel or abandon), prints a progress
 * line every second, polls the launch's counters every second (stock over time), and at the end
 * verifies the launch (verify.h) and builds the report document.
 *
 * One libuv loop drives everything; shoppers' requests go over `connections` keep-alive
 * connections, one request in flight per connection, in order of intended time. */
#ifndef FS_LOAD_SHOP_H
#define FS_LOAD_SHOP_H

#include "campaign.h"

#include <jansson.h>
#include <sys/socket.h>

typedef struct {
    const fs_campaign_t *campaign;
    struct sockaddr_storage server;
    const char *server_url;
    const char *admin_token;   /* never printed */
    const char *api_keys;      /* comma-separated; never printed */
    char redis_host[64];
    int redis_port, redis_db;
    char redis_user[128], redis_password[256]; /* AUTH when the password is not empty */
    int timeout_ms;
    int progress;
    int verify;
} fs_shop_opts_t;

/* Runs the campaign (bounded by duration + drain + a few seconds of set-up). On return *doc is
 * the report document (or NULL when the launch could not even be created), *passed is 1 when
 * every verification passed (or verification was off). Returns 0, or a negative code with a
 * message in err when the run could not happen (server unreachable, launch refused). */
int fs_shop_run(const fs_shop_opts_t *o, json_t **doc, int *passed, char *err, size_t errcap);

#endif
