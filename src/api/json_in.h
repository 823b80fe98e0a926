/* Reading JSON request bodies with jsmn (a zero-allocation tokenizer from Debian's libjsmn-dev):
 * fixed token array on the stack, lookups by key, string unescaping into caller buffers. */
#ifndef FS_JSON_IN_H
#define FS_JSON_IN_H

#include <stddef.h>
#include <stdint.h>

#define FS_JSON_MAX_TOKENS 128

typedef struct {
    int type; /* FS_JSON_OBJECT, ... */
    int start, end, size;
} fs_json_tok_t;

enum { FS_JSON_UNDEFINED = 0, FS_JSON_OBJECT, FS_JSON_ARRAY, FS_JSON_STRING, FS_JSON_PRIMITIVE };

typedef struct {
    const char *js;
    size_t len;
    int n;
    fs_json_tok_t tok[FS_JSON_MAX_TOKENS];
} fs_json_doc_t;

/* Tokenizes js; the top level must be an object. Returns 0 or FS_EINVAL. */
int fs_json_parse(fs_json_doc_t *d, const char *js, size_t len);
/* Index of the value of key in the object at token obj, or -1. */
int fs_json_find(const fs_json_doc_t *d, int obj, const char *key);
/* Decodes the string at token i (escapes, \u with surrogate pairs, into UTF-8) into out, NUL
 * terminated. Returns 0, or FS_EINVAL if it is not a string, is malformed or does not fit cap-1. */
int fs_json_string(const fs_json_doc_t *d, int i, char *out, size_t cap, size_t *outlen);
/* An integer at token i (no fraction or exponent). Returns 0 or FS_EINVAL. */
int fs_json_int(const fs_json_doc_t *d, int i, int64_t *out);
/* 1 if the token at i is the literal null. */
int fs_json_is_null(const fs_json_doc_t *d, int i);

#endif
