/* Launch documents for `launch apply`: the JSON body of PUT /admin/v1/launches/{launch} (with an
 * optional "launch" member naming the id), or the same in INI:
 *
 *   [launch]
 *   id = demo-phone
 *   name = Phone 15 launch
 *   hold_seconds = 600
 *   starts_at = 2026-11-27T10:00:00Z     ; optional
 *   [sku phone-15-black]
 *   stock = 3000
 *   per_user_limit = 2
 *   price_cents = 399900
 */
#include "cli.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    json_t *doc, *skus;
    char **launch;
    char msg[256];
} fs__ini_t;

static int fs__int(const char *v, json_int_t *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end) return -1;
    *out = x;
    return 0;
}

static int fs__on_ini(void *user, const char *section, const char *name, const char *value)
{
    fs__ini_t *p = user;
    json_int_t n;
    if (strcmp(section, "launch") == 0) {
        if (strcmp(name, "id") == 0) {
            free(*p->launch);
            *p->launch = strdup(value);
        } else if (strcmp(name, "name") == 0) {
            json_object_set_new(p->doc, "name", json_string(value));
        } else if (strcmp(name, "hold_seconds") == 0) {
            if (fs__int(value, &n)) goto bad_int;
            json_object_set_new(p->doc, name, json_integer(n));
        } else if (strcmp(name, "starts_at") == 0 || strcmp(name, "ends_at") == 0) {
            json_object_set_new(p->doc, name, *value ? json_string(value) : json_null());
        } else {
            snprintf(p->msg, sizeof p->msg, "unknown key %s in [launch]", name);
            return 0;
        }
        return 1;
    }
    if (strncmp(section, "sku ", 4) == 0 && section[4]) {
        const char *id = section + 4;
        json_t *s = NULL;
        size_t i;
        json_t *it;
        json_array_foreach(p->skus, i, it)
            if (strcmp(json_string_value(json_object_get(it, "sku")), id) == 0) s = it;
        if (!s) {
            s = json_pack("{ss}", "sku", id);
            json_array_append_new(p->skus, s);
        }
        if (strcmp(name, "stock") && strcmp(name, "per_user_limit") && strcmp(name, "price_cents")) {
            snprintf(p->msg, sizeof p->msg, "unknown key %s in [sku %s]", name, id);
            return 0;
        }
        if (fs__int(value, &n)) goto bad_int;
        json_object_set_new(s, name, json_integer(n));
        return 1;
    }
    snprintf(p->msg, sizeof p->msg, "unknown section [%s] (expected [launch] or [sku ID])", section);
    return 0;
bad_int:
    snprintf(p->msg, sizeof p->msg, "%s must be an integer", name);
    return 0;
}

json_t *fs_cli_launch_doc(const char *path, char **launch)
{
    *launch = NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "flashsale-cli: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    int c;
    while ((c = fgetc(f)) == ' ' || c == '\t' || c == '\n' || c == '\r') {}
    rewind(f);
    size_t pl = strlen(path);
    int ini = (pl > 4 && strcmp(path + pl - 4, ".ini") == 0) || c != '{';
    if (!ini) {
        json_error_t jerr;
        json_t *doc = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
        fclose(f);
        if (!doc || !json_is_object(doc)) {
            fprintf(stderr, "flashsale-cli: %s line %d: %s\n", path, jerr.line,
                    doc ? "the document must be a JSON object" : jerr.text);
            json_decref(doc);
            return NULL;
        }
        json_t *id = json_object_get(doc, "launch");
        if (json_is_string(id)) *launch = strdup(json_string_value(id));
        json_object_del(doc, "launch");
        return doc;
    }
    fs__ini_t p = {.doc = json_object(), .skus = json_array(), .launch = launch};
    json_object_set(p.doc, "skus", p.skus);
    int rc = ini_parse_file(f, fs__on_ini, &p);
    fclose(f);
    json_decref(p.skus);
    if (rc) {
        fprintf(stderr, "flashsale-cli: %s line %d: %s\n", path, rc,
                p.msg[0] ? p.msg : "malformed line (expected [section] or key = value)");
        json_decref(p.doc);
        free(*launch);
        *launch = NULL;
        return NULL;
    }
    return p.doc;
}
