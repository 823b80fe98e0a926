/* flashsale-relay configuration (see relay_config.h). INI parsing is Debian's libinih, as for the
 * server; the setting table below is the single list of names, defaults and ranges. */
#include "relay_config.h"
#include "deliver.h"
#include "../common/log.h"
#include "flashsale/config.h"
#include "flashsale/error.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { FS__STR, FS__INT, FS__LEVEL } fs__kind_t;

typedef struct {
    const char *section;
    const char *key;
    const char *env;
    fs__kind_t kind;
    size_t offset;
    int min, max;
    const char *def; /* default, as text (for --help and fs_relay_config_defaults) */
} fs__setting_t;

#define FS__OFF(f) offsetof(fs_relay_config_t, f)
static const fs__setting_t fs__settings[] = {
    {"relay", "target", "FLASHSALE_RELAY_TARGET", FS__STR, FS__OFF(target), 0, 0, ""},
    {"relay", "secret", "FLASHSALE_RELAY_SECRET", FS__STR, FS__OFF(secret), 0, 0, ""},
    {"relay", "ca_file", "FLASHSALE_RELAY_CA_FILE", FS__STR, FS__OFF(ca_file), 0, 0, ""},
    {"relay", "listen", "FLASHSALE_RELAY_LISTEN", FS__STR, FS__OFF(listen), 0, 0, "127.0.0.1:8081"},
    {"relay", "max_attempts", "FLASHSALE_RELAY_MAX_ATTEMPTS", FS__INT, FS__OFF(max_attempts), 1, 1000, "10"},
    {"relay", "max_in_flight", "FLASHSALE_RELAY_MAX_IN_FLIGHT", FS__INT, FS__OFF(max_in_flight), 1, 1024, "16"},
    {"relay", "max_pending", "FLASHSALE_RELAY_MAX_PENDING", FS__INT, FS__OFF(max_pending), 1, 100000, "1000"},
    {"relay", "batch", "FLASHSALE_RELAY_BATCH", FS__INT, FS__OFF(batch), 1, 10000, "100"},
    {"relay", "timeout_ms", "FLASHSALE_RELAY_TIMEOUT_MS", FS__INT, FS__OFF(timeout_ms), 50, 600000, "10000"},
    {"relay", "backoff_min_ms", "FLASHSALE_RELAY_BACKOFF_MIN_MS", FS__INT, FS__OFF(backoff_min_ms), 1, 3600000, "500"},
    {"relay", "backoff_max_ms", "FLASHSALE_RELAY_BACKOFF_MAX_MS", FS__INT, FS__OFF(backoff_max_ms), 1, 3600000, "60000"},
    {"relay", "claim_idle_ms", "FLASHSALE_RELAY_CLAIM_IDLE_MS", FS__INT, FS__OFF(claim_idle_ms), 100, 86400000, "30000"},
    {"relay", "discover_interval_ms", "FLASHSALE_RELAY_DISCOVER_INTERVAL_MS", FS__INT, FS__OFF(discover_interval_ms), 10, 3600000, "1000"},
    {"relay", "block_ms", "FLASHSALE_RELAY_BLOCK_MS", FS__INT, FS__OFF(block_ms), 1, 60000, "1000"},
    {"relay", "group", "FLASHSALE_RELAY_GROUP", FS__STR, FS__OFF(group), 0, 0, "relay"},
    {"relay", "consumer", "FLASHSALE_RELAY_CONSUMER", FS__STR, FS__OFF(consumer), 0, 0, ""},
    {"relay", "shutdown_timeout_ms", "FLASHSALE_SHUTDOWN_TIMEOUT_MS", FS__INT, FS__OFF(shutdown_timeout_ms), 0, 600000, "5000"},
    {"relay", "log_level", "FLASHSALE_LOG_LEVEL", FS__LEVEL, FS__OFF(log_level), 0, 0, "info"},
    {"redis", "url", "FLASHSALE_REDIS", FS__STR, FS__OFF(redis_url), 0, 0, "redis://127.0.0.1:6379/0"},
    {"redis", "timeout_ms", "FLASHSALE_REDIS_TIMEOUT_MS", FS__INT, FS__OFF(redis_timeout_ms), 10, 600000, "1000"},
    {"auth", "admin_token", "FLASHSALE_ADMIN_TOKEN", FS__STR, FS__OFF(admin_token), 0, 0, ""},
};
#define FS__NSETTINGS (sizeof fs__settings / sizeof fs__settings[0])

/* Sets one setting from text. The message never repeats the value (it may be a credential). */
static int fs__set(fs_relay_config_t *cfg, const fs__setting_t *s, const char *value, char *err,
                   size_t errcap)
{
    char *base = (char *)cfg + s->offset;
    switch (s->kind) {
    case FS__STR: {
        char **dst = (char **)base;
        free(*dst);
        *dst = fs_xstrndup(value, strlen(value));
        return FS_OK;
    }
    case FS__INT: {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < s->min || v > s->max) {
            snprintf(err, errcap, "%s.%s must be an integer from %d to %d", s->section, s->key,
                     s->min, s->max);
            return FS_EINVAL;
        }
        *(int *)base = (int)v;
        return FS_OK;
    }
    case FS__LEVEL: {
        fs_log_level_t lv;
        if (fs_log_parse_level(value, &lv)) {
            snprintf(err, errcap, "%s.%s must be one of debug, info, warn, error", s->section,
                     s->key);
            return FS_EINVAL;
        }
        *(int *)base = (int)lv;
        return FS_OK;
    }
    }
    return FS_EINVAL;
}

void fs_relay_config_defaults(fs_relay_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    char err[128];
    for (size_t i = 0; i < FS__NSETTINGS; i++) {
        int rc = fs__set(cfg, &fs__settings[i], fs__settings[i].def, err, sizeof err);
        fs_assert(rc == FS_OK);
    }
}

void fs_relay_config_usage(void *file)
{
    FILE *f = file;
    for (size_t i = 0; i < FS__NSETTINGS; i++) {
        const fs__setting_t *s = &fs__settings[i];
        char name[64];
        snprintf(name, sizeof name, "[%s] %s", s->section, s->key);
        fprintf(f, "  %-28s %-38s %s\n", name, s->env, s->def[0] ? s->def : "(none)");
    }
}

typedef struct {
    fs_relay_config_t *cfg;
    char msg[256];
} fs__ini_ctx_t;

static int fs__ini_handler(void *user, const char *section, const char *name, const char *value)
{
    fs__ini_ctx_t *ctx = user;
    for (size_t i = 0; i < FS__NSETTINGS; i++) {
        const fs__setting_t *s = &fs__settings[i];
        if (strcmp(s->section, section) == 0 && strcmp(s->key, name) == 0)
            return fs__set(ctx->cfg, s, value, ctx->msg, sizeof ctx->msg) == FS_OK;
    }
    snprintf(ctx->msg, sizeof ctx->msg, "unknown setting [%s] %s", section, name);
    return 0;
}

int fs_relay_config_load(fs_relay_config_t *cfg, const char *path, char *err, size_t errcap)
{
    if (path) {
        fs__ini_ctx_t ctx = {.cfg = cfg, .msg = ""};
        int rc = ini_parse(path, fs__ini_handler, &ctx);
        if (rc == -1) {
            snprintf(err, errcap, "cannot open config file %s: %s", path, strerror(errno));
            return FS_EINVAL;
        }
        if (rc != 0) {
            snprintf(err, errcap, "config file %s line %d: %s", path, rc,
                     ctx.msg[0] ? ctx.msg : "malformed line (expected [section] or key = value)");
            return FS_EINVAL;
        }
    }
    for (size_t i = 0; i < FS__NSETTINGS; i++) {
        const char *v = getenv(fs__settings[i].env);
        if (!v) continue;
        char msg[200];
        if (fs__set(cfg, &fs__settings[i], v, msg, sizeof msg)) {
            snprintf(err, errcap, "environment %s: %s", fs__settings[i].env, msg);
            return FS_EINVAL;
        }
    }
    return FS_OK;
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
    int port, db;
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
    if (fs_parse_redis_url(cfg->redis_url, host, sizeof host, &port, &db)) {
        snprintf(err, errcap, "redis url must be redis://host:port[/db]");
        return FS_EINVAL;
    }
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
    for (size_t i = 0; i < FS__NSETTINGS; i++) {
        if (fs__settings[i].kind != FS__STR) continue;
        char **p = (char **)((char *)cfg + fs__settings[i].offset);
        free(*p);
        *p = NULL;
    }
}
