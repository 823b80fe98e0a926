/* Levelled, one-line-per-event logging to stderr in key=value form:
 *   ts=2026-11-27T01:02:03.456Z level=info event=listening addr=127.0.0.1:8080
 * Callers pass the event name and, optionally, more key=value pairs as a printf format. Values
 * with spaces must be quoted by the caller (use fs_log_quote). Never pass a credential. */
#ifndef FS_LOG_H
#define FS_LOG_H

#include <stddef.h>

typedef enum { FS_LOG_DEBUG = 0, FS_LOG_INFO, FS_LOG_WARN, FS_LOG_ERROR } fs_log_level_t;

void fs_log_set_level(fs_log_level_t level);
fs_log_level_t fs_log_get_level(void);
/* Parses "debug", "info", "warn", "error". Returns 0 or FS_EINVAL. */
int fs_log_parse_level(const char *s, fs_log_level_t *out);

void fs_log(fs_log_level_t level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes `s` as a double-quoted log value (escaping quotes, backslashes and control characters)
 * into out (always NUL-terminated, truncated to cap). Returns out. */
char *fs_log_quote(char *out, size_t cap, const char *s);

#define fs_debug(ev, ...) \
    do { if (fs_log_get_level() <= FS_LOG_DEBUG) fs_log(FS_LOG_DEBUG, ev, __VA_ARGS__); } while (0)
#define fs_info(ev, ...) fs_log(FS_LOG_INFO, ev, __VA_ARGS__)
#define fs_warn(ev, ...) fs_log(FS_LOG_WARN, ev, __VA_ARGS__)
#define fs_error(ev, ...) fs_log(FS_LOG_ERROR, ev, __VA_ARGS__)

/* Release-build assertion: logs and aborts. */
#define fs_assert(cond)                                                                        \
    do {                                                                                       \
        if (!(cond)) fs_panic(__FILE__, __LINE__, #cond);                                      \
    } while (0)
__attribute__((noreturn)) void fs_panic(const char *file, int line, const char *what);

/* Allocation that aborts with a message on out-of-memory. */
void *fs_xmalloc(size_t n);
void *fs_xcalloc(size_t n, size_t size);
void *fs_xrealloc(void *p, size_t n);
char *fs_xstrndup(const char *s, size_t n);

#endif
