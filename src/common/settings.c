/* Table-driven settings (see include/flashsale/settings.h). */
#include "flashsale/settings.h"
#include "flashsale/error.h"
#include "log.h"

#include <errno.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>

int fs_setting_set(void *base, const fs_setting_t *s, const char *value, char *err, size_t errcap)
{
    char *field = (char *)base + s->offset;
    switch (s->kind) {
    case FS_SETTING_STR: {
        char **dst = (char **)field;
        free(*dst);
        *dst = fs_xstrndup(value, strlen(value));
        return FS_OK;
    }
    case FS_SETTING_INT: {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < s->min || v > s->max) {
            snprintf(err, errcap, "%s.%s must be an integer from %d to %d", s->section, s->key,
                     s->min, s->max);
            return FS_EINVAL;
        }
        *(int *)field = (int)v;
        return FS_OK;
    }
    case FS_SETTING_LEVEL: {
        fs_log_level_t lv;
        if (fs_log_parse_level(value, &lv)) {
            snprintf(err, errcap, "%s.%s must be one of debug, info, warn, error", s->section,
                     s->key);
            return FS_EINVAL;
        }
        *(int *)field = (int)lv;
        return FS_OK;
    }
    }
    return FS_EINVAL;
}

void fs_settings_defaults(void *base, const fs_setting_t *t, size_t n)
{
    char err[160];
    for (size_t i = 0; i < n; i++) {
        if (!t[i].def) continue;
        int rc = fs_setting_set(base, &t[i], t[i].def, err, sizeof err);
        fs_assert(rc == FS_OK);
    }
}

typedef struct {
    void *base;
    const fs_setting_t *t;
    size_t n;
    fs_settings_extra_fn extra;
    char msg[256];
} fs__ini_ctx_t;

static int fs__ini_handler(void *user, const char *section, const char *name, const char *value)
{
    fs__ini_ctx_t *ctx = user;
    for (size_t i = 0; i < ctx->n; i++) {
        const fs_setting_t *s = &ctx->t[i];
        if (strcmp(s->section, section) == 0 && strcmp(s->key, name) == 0)
            return fs_setting_set(ctx->base, s, value, ctx->msg, sizeof ctx->msg) == FS_OK;
    }
    if (ctx->extra) {
        int rc = ctx->extra(ctx->base, section, name, value, ctx->msg, sizeof ctx->msg);
        if (rc != 0) return rc > 0;
    }
    snprintf(ctx->msg, sizeof ctx->msg, "unknown setting [%s] %s", section, name);
    return 0;
}

int fs_settings_load(void *base, const fs_setting_t *t, size_t n, const char *path,
                     fs_settings_extra_fn extra, char *err, size_t errcap)
{
    if (path) {
        fs__ini_ctx_t ctx = {.base = base, .t = t, .n = n, .extra = extra, .msg = ""};
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
    for (size_t i = 0; i < n; i++) {
        const char *v = getenv(t[i].env);
        if (!v) continue;
        char msg[200];
        if (fs_setting_set(base, &t[i], v, msg, sizeof msg)) {
            snprintf(err, errcap, "environment %s: %s", t[i].env, msg);
            return FS_EINVAL;
        }
    }
    return FS_OK;
}

void fs_settings_free(void *base, const fs_setting_t *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (t[i].kind != FS_SETTING_STR) continue;
        char **field = (char **)((char *)base + t[i].offset);
        free(*field);
        *field = NULL;
    }
}

void fs_settings_usage(FILE *f, const fs_setting_t *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "[%s] %s", t[i].section, t[i].key);
        fprintf(f, "  %-28s %-38s %s\n", name, t[i].env, t[i].def && t[i].def[0] ? t[i].def : "(none)");
    }
}
