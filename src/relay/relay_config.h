/* flashsale-relay configuration: an INI file, then FLASHSALE_* environment variables on top (the
 * same rules as the server's configuration: env wins, the message of a bad value names the setting
 * and the file's line, never the value).
 *
 * Ownership: fs_relay_config_t owns its strings; fs_relay_config_free releases them. */
#ifndef FS_RELAY_CONFIG_H
#define FS_RELAY_CONFIG_H

#include <stddef.h>

typedef struct {
    /* [relay] */
    char *target;             /* endpoint URL: https://host[:port]/path, http only to loopback */
    char *secret;             /* comma-separated signing secrets (each >= 16 bytes) */
    char *ca_file;            /* PEM bundle trusted instead of the system store ("" = system) */
    char *listen;             /* host:port of /healthz, /metrics and the admin endpoints */
    int max_attempts;
    int max_in_flight;        /* concurrent HTTP requests (= connections) to the target */
    int max_pending;          /* entries held at once (in flight + waiting to be retried) */
    int batch;                /* XREADGROUP / XAUTOCLAIM COUNT */
    int timeout_ms;           /* one delivery attempt, connect to complete answer */
    int backoff_min_ms, backoff_max_ms;
    int claim_idle_ms;        /* entries idle this long are taken over from other relays */
    int discover_interval_ms; /* how often new launches/SKUs are looked for */
    int block_ms;             /* XREADGROUP BLOCK */
    char *group;
    char *consumer;           /* "" = <hostname>-<pid> */
    int shutdown_timeout_ms;
    int log_level;            /* fs_log_level_t */
    /* [redis] */
    char *redis_url;
    char *redis_tls_ca_file, *redis_tls_cert_file, *redis_tls_key_file; /* as the server's */
    int redis_timeout_ms;
    /* [auth] */
    char *admin_token;        /* "" = admin endpoints disabled */
} fs_relay_config_t;

void fs_relay_config_defaults(fs_relay_config_t *cfg);
/* Reads the INI file at path (when not NULL), then the environment. Returns 0, or FS_EINVAL with
 * a one-line message in err. */
int fs_relay_config_load(fs_relay_config_t *cfg, const char *path, char *err, size_t errcap);
/* Checks that the configuration can run a relay: target, secret, addresses, value relations. */
int fs_relay_config_validate(const fs_relay_config_t *cfg, char *err, size_t errcap);
void fs_relay_config_free(fs_relay_config_t *cfg);
/* Prints the settings table (section, key, environment variable, default) for --help. */
void fs_relay_config_usage(void *file);

#endif
