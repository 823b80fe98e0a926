/* flashsale-server configuration: an INI file, then FLASHSALE_* environment variables on top.
 *
 * Ownership: fs_config_t owns its strings; fs_config_free releases them. */
#ifndef FLASHSALE_CONFIG_H
#define FLASHSALE_CONFIG_H

#include <stddef.h>

/* Roles of operator tokens: a viewer may read the operator API, an operator may also act. */
typedef enum { FS_ROLE_VIEWER = 1, FS_ROLE_OPERATOR = 2 } fs_role_t;

/* A named operator token from the [tokens] section (`name = role:token`). */
typedef struct {
    char *name;   /* [A-Za-z0-9_.~-]{1,64}; recorded in the audit stream instead of the token */
    int role;     /* fs_role_t */
    char *secret;
} fs_config_token_t;

typedef struct {
    char *listen;       /* host:port */
    int threads;
    int log_level;      /* fs_log_level_t */
    int idle_timeout_ms;
    int shutdown_timeout_ms;
    int drain_grace_ms; /* on shutdown, idle keep-alive connections stay open this long */
    int sweep_interval_ms;
    int soldout_recheck_ms;
    int queue_max_wait_ms;
    int queue_max_len;
    int batch_linger_us;     /* a busy SKU's next call waits this long for batch_target requests */
    int batch_target;
    int grouped_holds;       /* 1: fs_reserve_group for one-unit batches (docs/operators.md) */
    int admission_per_sku;   /* reservation requests/s per SKU let through to Redis; 0 = no cap */
    char *trusted_proxies; /* comma-separated IPs/CIDRs whose X-Forwarded-For is believed */
    int max_connections;          /* open client connections, all event loops together */
    int max_connections_per_addr; /* open client connections from one socket peer address */
    int header_timeout_ms;        /* request line + headers, from the request's first byte */
    int body_timeout_ms;          /* the whole request, from its first byte */
    char *redis_url;
    char *redis_tls_ca_file;   /* rediss://: trusted roots ("": the system's) */
    char *redis_tls_cert_file; /* rediss://: a client certificate and its key, or "" for none */
    char *redis_tls_key_file;
    int redis_timeout_ms;
    char *api_keys;     /* comma-separated */
    char *admin_token;  /* comma-separated; each is named "admin" with role operator */
    char *shopper_secret; /* HMAC key of X-Shopper-Token ("" disables shopper tokens) */
    fs_config_token_t *tokens; /* [tokens] section, in file order */
    size_t ntokens;
} fs_config_t;

/* Fills cfg with defaults. */
void fs_config_defaults(fs_config_t *cfg);
/* Reads the INI file at path (when path is not NULL), then the environment. On failure returns
 * FS_EINVAL and writes a one-line message (with the file's line number where there is one) into err. */
int fs_config_load(fs_config_t *cfg, const char *path, char *err, size_t errcap);
/* Name of a role ("viewer", "operator"). */
const char *fs_role_name(int role);
/* Checks that the configuration can run a server (credentials present, values in range): at least
 * one operator credential (admin_token or an operator in [tokens]), token names unique, no secret
 * used twice. */
int fs_config_validate(const fs_config_t *cfg, char *err, size_t errcap);
void fs_config_free(fs_config_t *cfg);

/* Parsed forms. "host:port" (IPv4 or [IPv6]); returns 0 or FS_EINVAL. host must hold 64 bytes. */
int fs_parse_hostport(const char *s, char *host, size_t hostcap, int *port);
/* "redis://[[user]:password@]host:port[/db]", or rediss:// for TLS (tls = 1): with a password, every connection first sends AUTH
 * (with the user, if one is given: a Redis 6 ACL user; else the default user). The user and the
 * password are percent-decoded (%40 for '@', %3A for ':' in a user, %25 for '%'); they must not
 * hold control characters. Returns 0 or FS_EINVAL. Never log the password. */
typedef struct {
    char host[64];
    int port;
    int db;
    char user[128];     /* "" for the default user */
    char password[256]; /* "" for no AUTH */
    int tls;            /* rediss:// */
} fs_redis_url_t;
int fs_redis_url_parse(const char *s, fs_redis_url_t *u);
/* The [redis] settings the server and the relay share: the URL parses, and a TLS client
 * certificate comes with its key. Returns 0, or FS_EINVAL with a message in err. */
int fs_redis_settings_check(const char *url, const char *tls_cert_file, const char *tls_key_file,
                            char *err, size_t errcap);

#endif
