/* flashsale-relay configuration (see relay_config.h). INI parsing is Debian's libinih, as for the
 * server; the setting table below is the single list of names, defaults and ranges. */
#include "relay_config.h"
#include "deliver.h"
#include "../common/log.h"
#include "flashsale/config.h"
#include "flashsale/error.h"
#include "flashsale/settings.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FS__OFF(f) offsetof(fs_relay_config_t, f)
static const fs_setting_t fs__settings[] = {
    {"relay", "target", "FLASHSALE_RELAY_TARGET", FS_SETTING_STR, FS__OFF(target), 0, 0, ""},
    {"relay", "secret", "FLASHSALE_RELAY_SECRET", FS_SETTING_STR, FS__OFF(secret), 0, 0, ""},
    {"relay", "ca_file", "FLASHSALE_RELAY_CA_FILE", FS_SETTING_STR, FS__OFF(ca_file), 0, 0, ""},
    {"relay", "listen", "FLASHSALE_RELAY_LISTEN", FS_SETTING_STR, FS__OFF(listen), 0, 0, "127.0.0.1:8081"},
    {"relay", "max_attempts", "FLASHSALE_RELAY_MAX_ATTEMPTS", FS_SETTING_INT, FS__OFF(max_attempts), 1, 1000, "10"},
    {"relay", "max_in_flight", "FLASHSALE_RELAY_MAX_IN_FLIGHT", FS_SETTING_INT, FS__OFF(max_in_flight), 1, 1024, "16"},
    {"relay", "max_pending", "FLASHSALE_RELAY_MAX_PENDING", FS_SETTING_INT, FS__OFF(max_pending), 1, 100000, "1000"},
    {"relay", "batch", "FLASHSALE_RELAY_BATCH", FS_SETTING_INT, FS__OFF(batch), 1, 10000, "100"},
    {"relay", "timeout_ms", "FLASHSALE_RELAY_TIMEOUT_MS", FS_SETTING_INT, FS__OFF(timeout_ms), 50, 600000, "10000"},
    {"relay", "backoff_min_ms", "FLASHSALE_RELAY_BACKOFF_MIN_MS", FS_SETTING_INT, FS__OFF(backoff_min_ms), 1, 3600000, "500"},
    {"relay", "backoff_max_ms", "FLASHSALE_RELAY_BACKOFF_MAX_MS", FS_SETTING_INT, FS__OFF(backoff_max_ms), 1, 3600000, "60000"},
    {"relay", "claim_idle_ms", "FLASHSALE_RELAY_CLAIM_IDLE_MS", FS_SETTING_INT, FS__OFF(claim_idle_ms), 100, 86400000, "30000"},
    {"relay", "discover_interval_ms", "FLASHSALE_RELAY_DISCOVER_INTERVAL_MS", FS_SETTING_INT, FS__OFF(discover_interval_ms), 10, 3600000, "1000"},
    {"relay", "block_ms", "FLASHSALE_RELAY_BLOCK_MS", FS_SETTING_INT, FS__OFF(block_ms), 1, 60000, "1000"},
    {"relay", "group", "FLASHSALE_RELAY_GROUP", FS_SETTING_STR, FS__OFF(group), 0, 0, "relay"},
    {"relay", "consumer", "FLASHSALE_RELAY_CONSUMER", FS_SETTING_STR, FS__OFF(consumer), 0, 0, ""},
    {"relay", "shutdown_timeout_ms", "FLASHSALE_SHUTDOWN_TIMEOUT_MS", FS_SETTING_INT, FS__OFF(shutdown_timeout_ms), 0, 600000, "5000"},
    {"relay", "log_level", "FLASHSALE_LOG_LEVEL", FS_SETTING_LEVEL, FS__OFF(log_level), 0, 0, "info"},
    {"redis", "url", "FLASHSALE_REDIS", FS_SETTING_STR, FS__OFF(redis_url), 0, 0, "redis://127.0.0.1:6379/0"},
    {"redis", "tls_ca_file", "FLASHSALE_REDIS_TLS_CA_FILE", FS_SETTING_STR, FS__OFF(redis_tls_ca_file), 0, 0, ""},
    {"redis", "tls_cert_file", "FLASHSALE_REDIS_TLS_CERT_FILE", FS_SETTING_STR, FS__OFF(redis_tls_cert_file), 0, 0, ""},
    {"redis", "tls_key_file", "FLASHSALE_REDIS_TLS_KEY_FILE", FS_SETTING_STR, FS__OFF(redis_tls_key_file), 0, 0, ""},
    {"redis", "timeout_ms", "FLASHSALE_REDIS_TIMEOUT_MS", FS_SETTING_INT, FS__OFF(redis_timeout_ms), 10, 600000, "1000"},
    {"auth", "admin_token", "FLASHSALE_ADMIN_TOKEN", FS_SETTING_STR, FS__OFF(admin_token), 0, 0, ""},
};
#define FS__NSETTINGS (sizeof fs__settings / sizeof fs__settings[0])

void fs_relay_config_defaults(fs_relay_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    fs_settings_defaults(cfg, fs__settings, FS__NSETTINGS);
}

void fs_relay_config_usage(void *file)
{
    fs_settings_usage(file, fs__settings, FS__NSETTINGS);
}

int fs_relay_config_load(fs_relay_config_t *cfg, const char *path, char *err, size_t errcap)
{
    return fs_settings_load(cfg, fs__settings, FS__NSETTINGS, path, NULL, err, errcap);
}

static int fs__name_ok(const char *s)
{
    if (!s[0] || strlen(s) > 128) return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p == 0x7f) return 0;
    return 1;
}

int fs_relay_config_validate(const fs_relay_config_t *cfg, char *err, size_t errcap)
{
    char host[64];
    int port;
    if (!cfg->target[0]) {
        snprintf(err, errcap, "no target configured: set FLASHSALE_RELAY_TARGET or [relay] target");
        return FS_EINVAL;
    }
    fs_relay_target_t t;
    char msg[200];
    if (fs_relay_target_parse(cfg->target, &t, msg, sizeof msg)) {
        snprintf(err, errcap, "relay.target: %s", msg);
        return FS_EINVAL;
    }
    if (!t.tls && cfg->ca_file[0]) {
        snprintf(err, errcap, "relay.ca_file is set but the target is plain http");
        return FS_EINVAL;
    }
    /* Every comma-separated secret must be long enough to be a key, not a password. */
    int nsecrets = 0;
    for (const char *p = cfg->secret; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n < 16) {
            snprintf(err, errcap, "relay.secret: every signing secret must be at least 16 bytes "
                                  "(set FLASHSALE_RELAY_SECRET or [relay] secret)");
            return FS_EINVAL;
        }
        nsecrets++;
        p += n + (comma ? 1 : 0);
    }
    if (nsecrets == 0) {
        snprintf(err, errcap, "no signing secret configured: set FLASHSALE_RELAY_SECRET or [relay] secret");
        return FS_EINVAL;
    }
    if (fs_parse_hostport(cfg->listen, host, sizeof host, &port)) {
        snprintf(err, errcap, "relay.listen must be host:port (IPv4 or [IPv6])");
        return FS_EINVAL;
    }
    if (fs_redis_settings_check(cfg->redis_url, cfg->redis_tls_cert_file, cfg->redis_tls_key_file,
                                err, errcap))
        return FS_EINVAL;
    if (!fs__name_ok(cfg->group)) {
        snprintf(err, errcap, "relay.group must be 1 to 128 printable characters without spaces");
        return FS_EINVAL;
    }
    if (cfg->consumer[0] && !fs__name_ok(cfg->consumer)) {
        snprintf(err, errcap, "relay.consumer must be 1 to 128 printable characters without spaces");
        return FS_EINVAL;
    }
    if (cfg->backoff_min_ms > cfg->backoff_max_ms) {
        snprintf(err, errcap, "relay.backoff_min_ms must not exceed relay.backoff_max_ms");
        return FS_EINVAL;
    }
    return FS_OK;
}

void fs_relay_config_free(fs_relay_config_t *cfg)
{
    fs_settings_free(cfg, fs__settings, FS__NSETTINGS);
}
