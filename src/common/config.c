/* Configuration loading (see include/flashsale/config.h). INI parsing is Debian's libinih: it
 * reports the line of the first error, which is what our error messages need. */
#include "flashsale/config.h"
#include "flashsale/error.h"
#include "flashsale/settings.h"
#include "ids.h"
#include "log.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FS__OFF(f) offsetof(fs_config_t, f)
#define FS__S FS_SETTING_STR
#define FS__I FS_SETTING_INT
static const fs_setting_t fs__settings[] = {
    {"server", "listen", "FLASHSALE_LISTEN", FS__S, FS__OFF(listen), 0, 0, "127.0.0.1:8080"},
    {"server", "threads", "FLASHSALE_THREADS", FS__I, FS__OFF(threads), 1, 256, NULL}, /* cores */
    {"server", "log_level", "FLASHSALE_LOG_LEVEL", FS_SETTING_LEVEL, FS__OFF(log_level), 0, 0, "info"},
    {"server", "idle_timeout_ms", "FLASHSALE_IDLE_TIMEOUT_MS", FS__I, FS__OFF(idle_timeout_ms), 50, 3600000, "30000"},
    {"server", "shutdown_timeout_ms", "FLASHSALE_SHUTDOWN_TIMEOUT_MS", FS__I, FS__OFF(shutdown_timeout_ms), 0, 600000, "5000"},
    {"server", "drain_grace_ms", "FLASHSALE_DRAIN_GRACE_MS", FS__I, FS__OFF(drain_grace_ms), 0, 600000, "1000"},
    {"server", "sweep_interval_ms", "FLASHSALE_SWEEP_INTERVAL_MS", FS__I, FS__OFF(sweep_interval_ms), 10, 3600000, "250"},
    {"server", "soldout_recheck_ms", "FLASHSALE_SOLDOUT_RECHECK_MS", FS__I, FS__OFF(soldout_recheck_ms), 10, 3600000, "1000"},
    {"server", "queue_max_wait_ms", "FLASHSALE_QUEUE_MAX_WAIT_MS", FS__I, FS__OFF(queue_max_wait_ms), 1, 600000, "1000"},
    {"server", "queue_max_len", "FLASHSALE_QUEUE_MAX_LEN", FS__I, FS__OFF(queue_max_len), 1, 10000000, "10000"},
    {"server", "batch_linger_us", "FLASHSALE_BATCH_LINGER_US", FS__I, FS__OFF(batch_linger_us), 0, 1000000, "0"},
    {"server", "batch_target", "FLASHSALE_BATCH_TARGET", FS__I, FS__OFF(batch_target), 1, 256, "32"},
    {"server", "grouped_holds", "FLASHSALE_GROUPED_HOLDS", FS__I, FS__OFF(grouped_holds), 0, 1, "1"},
    {"server", "admission_per_sku", "FLASHSALE_ADMISSION_PER_SKU", FS__I, FS__OFF(admission_per_sku), 0, 100000000, "0"},
    {"server", "trusted_proxies", "FLASHSALE_TRUSTED_PROXIES", FS__S, FS__OFF(trusted_proxies), 0, 0, ""},
    {"server", "max_connections", "FLASHSALE_MAX_CONNECTIONS", FS__I, FS__OFF(max_connections), 1, 100000000, "100000"},
    {"server", "max_connections_per_addr", "FLASHSALE_MAX_CONNECTIONS_PER_ADDR", FS__I, FS__OFF(max_connections_per_addr), 1, 100000000, "1000"},
    {"server", "header_timeout_ms", "FLASHSALE_HEADER_TIMEOUT_MS", FS__I, FS__OFF(header_timeout_ms), 50, 3600000, "10000"},
    {"server", "body_timeout_ms", "FLASHSALE_BODY_TIMEOUT_MS", FS__I, FS__OFF(body_timeout_ms), 50, 3600000, "30000"},
    {"redis", "url", "FLASHSALE_REDIS", FS__S, FS__OFF(redis_url), 0, 0, "redis://127.0.0.1:6379/0"},
    {"redis", "tls_ca_file", "FLASHSALE_REDIS_TLS_CA_FILE", FS__S, FS__OFF(redis_tls_ca_file), 0, 0, ""},
    {"redis", "tls_cert_file", "FLASHSALE_REDIS_TLS_CERT_FILE", FS__S, FS__OFF(redis_tls_cert_file), 0, 0, ""},
    {"redis", "tls_key_file", "FLASHSALE_REDIS_TLS_KEY_FILE", FS__S, FS__OFF(redis_tls_key_file), 0, 0, ""},
    {"redis", "timeout_ms", "FLASHSALE_REDIS_TIMEOUT_MS", FS__I, FS__OFF(redis_timeout_ms), 10, 600000, "1000"},
    {"auth", "api_keys", "FLASHSALE_API_KEYS", FS__S, FS__OFF(api_keys), 0, 0, ""},
    {"auth", "admin_token", "FLASHSALE_ADMIN_TOKEN", FS__S, FS__OFF(admin_token), 0, 0, ""},
    {"auth", "shopper_secret", "FLASHSALE_SHOPPER_SECRET", FS__S, FS__OFF(shopper_secret), 0, 0, ""},
};
#define FS__NSETTINGS (sizeof fs__settings / sizeof fs__settings[0])

void fs_config_defaults(fs_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    fs_settings_defaults(cfg, fs__settings, FS__NSETTINGS);
    /* One event loop per core (each with its own SO_REUSEPORT listener and Redis connection). */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = cores > 0 ? (cores > 64 ? 64 : (int)cores) : 1;
}

const char *fs_role_name(int role)
{
    return role == FS_ROLE_OPERATOR ? "operator" : role == FS_ROLE_VIEWER ? "viewer" : "none";
}

/* One `name = role:token` line of [tokens]. The message names the token, never its secret. */
static int fs__add_token(fs_config_t *cfg, const char *name, const char *value, char *err,
                         size_t errcap)
{
    size_t nl = strlen(name);
    if (nl > 64 || !fs_id_valid(name, nl)) {
        snprintf(err, errcap, "[tokens] names must be 1 to 64 characters of A-Z a-z 0-9 _ . ~ -");
        return FS_EINVAL;
    }
    const char *colon = strchr(value, ':');
    int role = 0;
    if (colon && (size_t)(colon - value) == 6 && strncmp(value, "viewer", 6) == 0) role = FS_ROLE_VIEWER;
    if (colon && (size_t)(colon - value) == 8 && strncmp(value, "operator", 8) == 0) role = FS_ROLE_OPERATOR;
    const char *secret = colon ? colon + 1 : "";
    int bad = !role || !*secret;
    for (const char *p = secret; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == ',' || (unsigned char)*p >= 0x7f) bad = 1;
    if (bad) {
        snprintf(err, errcap,
                 "[tokens] %s must be role:token with role viewer or operator and a token of "
                 "printable characters without spaces or commas", name);
        return FS_EINVAL;
    }
    for (size_t i = 0; i < cfg->ntokens; i++)
        if (strcmp(cfg->tokens[i].name, name) == 0) {
            snprintf(err, errcap, "[tokens] %s appears twice", name);
            return FS_EINVAL;
        }
    cfg->tokens = fs_xrealloc(cfg->tokens, (cfg->ntokens + 1) * sizeof *cfg->tokens);
    fs_config_token_t *t = &cfg->tokens[cfg->ntokens++];
    t->name = fs_xstrndup(name, nl);
    t->role = role;
    t->secret = fs_xstrndup(secret, strlen(secret));
    return FS_OK;
}

/* The [tokens] section: named operator tokens, not in the settings table. */
static int fs__extra(void *base, const char *section, const char *name, const char *value,
                     char *msg, size_t msgcap)
{
    if (strcmp(section, "tokens") != 0) return 0;
    return fs__add_token(base, name, value, msg, msgcap) == FS_OK ? 1 : -1;
}

int fs_config_load(fs_config_t *cfg, const char *path, char *err, size_t errcap)
{
    return fs_settings_load(cfg, fs__settings, FS__NSETTINGS, path, fs__extra, err, errcap);
}

int fs_config_validate(const fs_config_t *cfg, char *err, size_t errcap)
{
    char host[64];
    int port;
    if (fs_parse_hostport(cfg->listen, host, sizeof host, &port)) {
        snprintf(err, errcap, "listen address must be host:port (IPv4 or [IPv6])");
        return FS_EINVAL;
    }
    if (fs_redis_settings_check(cfg->redis_url, cfg->redis_tls_cert_file, cfg->redis_tls_key_file,
                                err, errcap))
        return FS_EINVAL;
    int any_operator = 0;
    for (const char *p = cfg->admin_token; *p; p++)
        if (*p != ',' && *p != ' ' && *p != '\t') any_operator = 1;
    for (size_t i = 0; i < cfg->ntokens; i++) {
        if (cfg->tokens[i].role == FS_ROLE_OPERATOR) any_operator = 1;
        if (strcmp(cfg->tokens[i].name, "admin") == 0 && cfg->admin_token[0]) {
            snprintf(err, errcap, "[tokens] admin: the name admin is taken by the admin token");
            return FS_EINVAL;
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp(cfg->tokens[i].secret, cfg->tokens[k].secret) == 0) {
                snprintf(err, errcap, "[tokens] %s and %s have the same token", cfg->tokens[k].name,
                         cfg->tokens[i].name);
                return FS_EINVAL;
            }
    }
    if (!any_operator) {
        snprintf(err, errcap, "no admin token configured: set FLASHSALE_ADMIN_TOKEN, [auth] admin_token "
                              "or an operator in [tokens]");
        return FS_EINVAL;
    }
    size_t sl = strlen(cfg->shopper_secret);
    if (sl && sl < 16) {
        snprintf(err, errcap, "shopper secret must be at least 16 bytes (FLASHSALE_SHOPPER_SECRET or "
                              "[auth] shopper_secret); use e.g. openssl rand -hex 32");
        return FS_EINVAL;
    }
    int any_key = 0;
    for (const char *p = cfg->api_keys; *p; p++)
        if (*p != ',' && *p != ' ' && *p != '\t') any_key = 1;
    if (!any_key) {
        snprintf(err, errcap, "no API key configured: set FLASHSALE_API_KEYS or [auth] api_keys");
        return FS_EINVAL;
    }
    return FS_OK;
}

void fs_config_free(fs_config_t *cfg)
{
    if (cfg->shopper_secret) OPENSSL_cleanse(cfg->shopper_secret, strlen(cfg->shopper_secret));
    fs_settings_free(cfg, fs__settings, FS__NSETTINGS);
    for (size_t i = 0; i < cfg->ntokens; i++) {
        free(cfg->tokens[i].name);
        OPENSSL_cleanse(cfg->tokens[i].secret, strlen(cfg->tokens[i].secret));
        free(cfg->tokens[i].secret);
    }
    free(cfg->tokens);
    memset(cfg, 0, sizeof *cfg);
}

static int fs__port(const char *s, int *port)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || (*end && *end != '/') || v < 1 || v > 65535) return FS_EINVAL;
    *port = (int)v;
    return FS_OK;
}

int fs_parse_hostport(const char *s, char *host, size_t hostcap, int *port)
{
    const char *colon;
    size_t hl;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return FS_EINVAL;
        hl = (size_t)(close - s - 1);
        if (hl == 0 || hl >= hostcap) return FS_EINVAL;
        memcpy(host, s + 1, hl);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) return FS_EINVAL;
        hl = (size_t)(colon - s);
        if (hl == 0 || hl >= hostcap || memchr(s, ':', hl)) return FS_EINVAL;
        memcpy(host, s, hl);
    }
    host[hl] = 0;
    if (fs__port(colon + 1, port)) return FS_EINVAL;
    return strchr(colon + 1, '/') ? FS_EINVAL : FS_OK;
}

/* Percent-decodes s[0..n) into out (cap bytes with its NUL); FS_EINVAL on a bad escape, a NUL or
 * a control character, or no room. */
static int fs__pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n) return FS_EINVAL;
            const char *hi = s[i + 1] ? strchr(hex, s[i + 1]) : NULL;
            const char *lo = s[i + 2] ? strchr(hex, s[i + 2]) : NULL;
            if (!hi || !lo) return FS_EINVAL;
            c = (int)((hi - hex) % 16 * 16 + (lo - hex) % 16);
            i += 2;
        }
        if (c < 0x20 || c == 0x7f || o + 1 >= cap) return FS_EINVAL;
        out[o++] = (char)c;
    }
    out[o] = 0;
    return FS_OK;
}

int fs_redis_settings_check(const char *url, const char *tls_cert_file, const char *tls_key_file,
                            char *err, size_t errcap)
{
    fs_redis_url_t u;
    if (fs_redis_url_parse(url, &u)) {
        snprintf(err, errcap, "redis url must be redis[s]://[[user]:password@]host:port[/db]");
        return FS_EINVAL;
    }
    if (!tls_cert_file[0] != !tls_key_file[0]) {
        snprintf(err, errcap, "redis tls_cert_file and tls_key_file go together");
        return FS_EINVAL;
    }
    return FS_OK;
}

int fs_redis_url_parse(const char *s, fs_redis_url_t *u)
{
    static const char scheme[] = "redis://", tls_scheme[] = "rediss://";
    memset(u, 0, sizeof *u);
    const char *hp;
    if (strncmp(s, scheme, sizeof scheme - 1) == 0) {
        hp = s + sizeof scheme - 1;
    } else if (strncmp(s, tls_scheme, sizeof tls_scheme - 1) == 0) {
        hp = s + sizeof tls_scheme - 1;
        u->tls = 1;
    } else {
        return FS_EINVAL;
    }
    const char *at = strrchr(hp, '@');
    if (at) { /* user:password@ (the user may be empty: the default user) */
        const char *colon = memchr(hp, ':', (size_t)(at - hp));
        if (!colon || fs__pct_decode(hp, (size_t)(colon - hp), u->user, sizeof u->user) ||
            fs__pct_decode(colon + 1, (size_t)(at - colon - 1), u->password, sizeof u->password) ||
            !u->password[0])
            return FS_EINVAL;
        hp = at + 1;
    }
    char tmp[128];
    const char *slash = strchr(hp, '/');
    size_t n = slash ? (size_t)(slash - hp) : strlen(hp);
    if (n >= sizeof tmp) return FS_EINVAL;
    memcpy(tmp, hp, n);
    tmp[n] = 0;
    if (fs_parse_hostport(tmp, u->host, sizeof u->host, &u->port)) return FS_EINVAL;
    if (slash && slash[1]) {
        char *end;
        errno = 0;
        long v = strtol(slash + 1, &end, 10);
        if (errno || *end || v < 0 || v > 9999) return FS_EINVAL;
        u->db = (int)v;
    }
    return FS_OK;
}
