/* Table-driven settings shared by our programs: each setting is a field of a struct, read from an
 * INI file (Debian's libinih) and then from an environment variable, which wins.
 *
 * A program describes its settings once (section, key, variable, kind, field offset, range,
 * default) and gets defaults, loading with line-numbered errors, and a --help listing from here.
 * Messages never repeat a value (it may be a credential). */
#ifndef FLASHSALE_SETTINGS_H
#define FLASHSALE_SETTINGS_H

#include <stddef.h>
#include <stdio.h>

typedef enum { FS_SETTING_STR, FS_SETTING_INT, FS_SETTING_LEVEL } fs_setting_kind_t;

typedef struct {
    const char *section, *key, *env;
    fs_setting_kind_t kind;
    size_t offset;     /* of a char * (STR, owned: freed by fs_settings_free) or an int field */
    int min, max;      /* INT range */
    const char *def;   /* default as text; NULL: the program sets it itself */
} fs_setting_t;

/* Sets every setting that has a default. base points to the program's struct. */
void fs_settings_defaults(void *base, const fs_setting_t *t, size_t n);
/* Sets one setting from text. Returns 0, or FS_EINVAL with a message naming the setting. */
int fs_setting_set(void *base, const fs_setting_t *s, const char *value, char *err, size_t errcap);

/* Called for lines that are not in the table (e.g. a section of named entries). Returns 1 if it
 * took the line, 0 if the line is unknown, -1 for a bad value (with msg written). */
typedef int (*fs_settings_extra_fn)(void *base, const char *section, const char *name,
                                    const char *value, char *msg, size_t msgcap);

/* Reads the INI file at path (when not NULL), then the environment. On failure returns
 * FS_EINVAL with a one-line message, naming the file's line where there is one. */
int fs_settings_load(void *base, const fs_setting_t *t, size_t n, const char *path,
                     fs_settings_extra_fn extra, char *err, size_t errcap);
/* Frees the string settings. */
void fs_settings_free(void *base, const fs_setting_t *t, size_t n);
/* One line per setting: "[section] key   VARIABLE   default". */
void fs_settings_usage(FILE *f, const fs_setting_t *t, size_t n);

#endif
