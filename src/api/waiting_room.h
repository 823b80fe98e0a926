/* The optional waiting room of a launch (docs/rate-limits.md, "Waiting room"): the door in front
 * of the reservation path, and its signed queue tickets.
 *
 * A launch with `"waiting_room": {"admit_per_sec": N}` lets shoppers on to the reservation at N per
 * second (one second's worth at once), in arrival order; a shopper who comes before their turn is
 * answered 202 with a ticket and comes back with it in `X-Queue-Ticket`. The places and turns are
 * decided in Redis (fs_wr_pass, docs/redis.md); this file verifies tickets, keeps a per-loop cache
 * of which launches have a room (so that launches without one cost nothing), and answers.
 *
 *   ticket = B64(launch "|" user "|" position "|" turn_ms "|" exp_ms) "." B64(HMAC-SHA256(key, B64(...)))
 *
 * B64 is unpadded base64url; times are Unix milliseconds; the ticket is valid while now < exp_ms.
 * key = HMAC-SHA256(secret, "flashsale waiting-room ticket v1") where secret is the shopper-token
 * secret when one is set, else the first operator token: every server with the same settings
 * signs and accepts the same tickets. */
#ifndef FS_WAITING_ROOM_H
#define FS_WAITING_ROOM_H

#include "api.h"

#include <stddef.h>
#include <stdint.h>

/* B64 of at most 128 + 1 + 128 + 3 * (1 + 19) bytes (424) + "." + B64 of 32 bytes (43). */
#define FS_WR_TICKET_MAX 468
#define FS_WR_KEY_LEN 32

/* Failures of fs_wr_ticket_verify (negative, apart from the FS_E* codes). */
enum {
    FS_WR_MALFORMED = -110, /* not a ticket: bad alphabet, sizes or fields */
    FS_WR_FORGED = -111,    /* the signature does not match */
    FS_WR_EXPIRED = -112,   /* signed by us, but exp_ms has passed */
};

typedef struct {
    char launch[FS_ID_MAX + 1];
    char user[FS_ID_MAX + 1];
    size_t user_len;
    int64_t position, turn_ms, exp_ms;
} fs_wr_ticket_t;

/* The ticket key from a secret (see above). */
void fs_wr_key(const char *secret, size_t secret_len, uint8_t key[FS_WR_KEY_LEN]);
/* Writes t's ticket into out (FS_WR_TICKET_MAX + 1 bytes); returns its length, or FS_EINVAL when
 * launch or user is not a valid id or a number is negative. Signing the same t gives the same
 * ticket. */
int fs_wr_ticket_sign(const uint8_t key[FS_WR_KEY_LEN], const fs_wr_ticket_t *t, char *out);
/* Checks a ticket at now_ms: 0 and *t filled, or FS_WR_MALFORMED / FS_WR_FORGED / FS_WR_EXPIRED.
 * The signature is compared in constant time before anything in the ticket is believed. */
int fs_wr_ticket_verify(const uint8_t key[FS_WR_KEY_LEN], const char *tok, size_t n, int64_t now_ms,
                        fs_wr_ticket_t *t);

/* The door, called by the reservation handler once c->item is ready. Returns 0 when the request
 * goes on to fs_stock_reserve now (the launch has no room, as this loop has known for less than a
 * second, and a ticket, if any, is valid); 1 when the room took the request over: it answers it
 * (202 waiting, 409 sold_out, a ticket error, 503) or calls fs_stock_reserve(c->item) itself when
 * the shopper's turn has come. */
int fs_api_waiting_room(fs_api_ctx_t *c);

/* Operator side: FCALL fs_launch_waiting_room, reading (admit_milli -1) or setting a launch's
 * admission rate in shoppers per 1000 s (0: no room). cb gets the raw reply ["ok", admit_milli] or
 * ["not_found"]. A change also drops this loop's cached setting; other loops and servers see it
 * within a second. */
void fs_api_waiting_room_setting(fs_api_t *api, const char *launch, int64_t admit_milli,
                                 fs_redis_cb cb, void *arg);
/* Adds "waiting_room": null or {"admit_per_sec": N} to the JSON object that o ends with (nothing
 * when admit_milli < 0, i.e. unknown, or o does not end with '}'). */
void fs_api_waiting_room_json(fs_buf_t *o, int64_t admit_milli);
/* Frees the loop's room state (from fs_api_free's path). */
void fs_api_waiting_room_free(fs_api_t *api);

#endif
