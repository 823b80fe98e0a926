/* A growable byte buffer and a JSON writer on top of it.
 *
 * Ownership: the caller owns the fs_buf_t (usually embedded in a larger struct) and frees its
 * memory with fs_buf_free. Growth aborts on out-of-memory (fs_xrealloc). */
#ifndef FS_BUF_H
#define FS_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} fs_buf_t;

void fs_buf_init(fs_buf_t *b);
void fs_buf_free(fs_buf_t *b);
static inline void fs_buf_reset(fs_buf_t *b)
{
    b->len = 0;
}
void fs_buf_reserve(fs_buf_t *b, size_t extra);
void fs_buf_append(fs_buf_t *b, const void *p, size_t n);
void fs_buf_puts(fs_buf_t *b, const char *s);
void fs_buf_putc(fs_buf_t *b, char c);
void fs_buf_printf(fs_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fs_buf_i64(fs_buf_t *b, int64_t v);
/* Writes v in decimal to out (room for FS_I64_MAX_LEN bytes; no terminating NUL) and returns
 * its length. Answers use it instead of printf, which costs microseconds per call. */
#define FS_I64_MAX_LEN 20
size_t fs_fmt_i64(char *out, int64_t v);
/* Removes the first n bytes. */
void fs_buf_consume(fs_buf_t *b, size_t n);

/* JSON writing helpers. They do not track commas: callers write "," themselves, or use the
 * fs_json_key helpers which take a `first` flag. */
void fs_json_str(fs_buf_t *b, const char *s, size_t n); /* writes "escaped" */
void fs_json_cstr(fs_buf_t *b, const char *s);
/* Writes ,"key": (or "key": when *first is set, clearing it). */
void fs_json_key(fs_buf_t *b, int *first, const char *key);
void fs_json_kv_str(fs_buf_t *b, int *first, const char *key, const char *s, size_t n);
void fs_json_kv_cstr(fs_buf_t *b, int *first, const char *key, const char *s);
void fs_json_kv_i64(fs_buf_t *b, int *first, const char *key, int64_t v);
/* Replaces b's content with the error document {"error": code, "message": message}. */
void fs_json_error(fs_buf_t *b, const char *code, const char *message);
/* A time in ms since the epoch as an RFC 3339 string, or null when ms <= 0 and null_if_zero. */
void fs_json_kv_time(fs_buf_t *b, int *first, const char *key, int64_t ms, int null_if_zero);

#endif
