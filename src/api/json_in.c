/* jsmn-based JSON reading (see json_in.h). */
#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>

#include "json_in.h"
#include "flashsale/error.h"

#include <string.h>

_Static_assert(sizeof(jsmntok_t) >= sizeof(fs_json_tok_t), "token layout");

/* 1 if [s, e) is true, false, null or a JSON number. */
static int fs__primitive_valid(const char *s, const char *e)
{
    size_t n = (size_t)(e - s);
    if ((n == 4 && (!memcmp(s, "true", 4) || !memcmp(s, "null", 4))) || (n == 5 && !memcmp(s, "false", 5)))
        return 1;
    const char *p = s;
    if (p < e && *p == '-') p++;
    if (p >= e) return 0;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9') while (p < e && *p >= '0' && *p <= '9') p++;
    else return 0;
    if (p < e && *p == '.') {
        if (++p >= e || *p < '0' || *p > '9') return 0;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        if (++p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || *p < '0' || *p > '9') return 0;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    return p == e;
}

/* jsmn is lenient about commas too: {"a":1,} and [1,] pass, and so may [,1]. A comma must
 * neither follow '{', '[' or another comma nor come before '}' or ']' (outside strings). */
static int fs__commas_valid(const char *js, size_t len)
{
    char prev = 0; /* the last structural character outside strings */
    for (size_t i = 0; i < len; i++) {
        char ch = js[i];
        if (ch == '"') {
            for (i++; i < len && js[i] != '"'; i++)
                if (js[i] == '\\') i++;
            prev = '"';
            continue;
        }
        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') continue;
        if (ch == ',' && (prev == '{' || prev == '[' || prev == ',')) return 0;
        if ((ch == '}' || ch == ']') && prev == ',') return 0;
        prev = ch;
    }
    return 1;
}

/* jsmn is lenient: it accepts keys without values and misspelt literals. Check both. */
static int fs__valid(const fs_json_doc_t *d)
{
    for (int i = 0; i < d->n; i++) {
        const fs_json_tok_t *t = &d->tok[i];
        if (t->type == FS_JSON_PRIMITIVE && !fs__primitive_valid(d->js + t->start, d->js + t->end))
            return 0;
    }
    return 1;
}

int fs_json_parse(fs_json_doc_t *d, const char *js, size_t len)
{
    jsmn_parser p;
    jsmntok_t toks[FS_JSON_MAX_TOKENS];
    jsmn_init(&p);
    int n = jsmn_parse(&p, js, len, toks, FS_JSON_MAX_TOKENS);
    if (n < 1 || toks[0].type != JSMN_OBJECT) return FS_EINVAL;
    /* jsmn accepts trailing bytes after the top-level value; we do not (whitespace aside). */
    for (size_t i = (size_t)toks[0].end; i < len; i++)
        if (js[i] != ' ' && js[i] != '\n' && js[i] != '\r' && js[i] != '\t') return FS_EINVAL;
    d->js = js;
    d->len = len;
    d->n = n;
    for (int i = 0; i < n; i++) {
        switch (toks[i].type) {
        case JSMN_OBJECT: d->tok[i].type = FS_JSON_OBJECT; break;
        case JSMN_ARRAY: d->tok[i].type = FS_JSON_ARRAY; break;
        case JSMN_STRING: d->tok[i].type = FS_JSON_STRING; break;
        case JSMN_PRIMITIVE: d->tok[i].type = FS_JSON_PRIMITIVE; break;
        default: return FS_EINVAL;
        }
        /* Every key of an object must have exactly one value. */
        if (toks[i].type == JSMN_STRING && toks[i].parent >= 0 &&
            toks[toks[i].parent].type == JSMN_OBJECT && toks[i].size != 1)
            return FS_EINVAL;
        d->tok[i].start = toks[i].start;
        d->tok[i].end = toks[i].end;
        d->tok[i].size = toks[i].size;
    }
    return fs__valid(d) && fs__commas_valid(js, len) ? FS_OK : FS_EINVAL;
}

/* Index just past the subtree rooted at token i. */
static int fs__skip(const fs_json_doc_t *d, int i)
{
    int pending = 1;
    while (pending > 0 && i < d->n) {
        pending += d->tok[i].size - 1;
        i++;
    }
    return i;
}

int fs_json_find(const fs_json_doc_t *d, int obj, const char *key)
{
    if (obj < 0 || obj >= d->n || d->tok[obj].type != FS_JSON_OBJECT) return -1;
    size_t kl = strlen(key);
    int i = obj + 1;
    for (int k = 0; k < d->tok[obj].size && i < d->n; k++) {
        const fs_json_tok_t *t = &d->tok[i];
        int found = t->type == FS_JSON_STRING && (size_t)(t->end - t->start) == kl &&
                    memcmp(d->js + t->start, key, kl) == 0;
        if (found) return i + 1 < d->n ? i + 1 : -1;
        i = fs__skip(d, i + 1);
    }
    return -1;
}

static int fs__hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return FS_EINVAL;
    }
    *out = v;
    return FS_OK;
}

int fs_json_string(const fs_json_doc_t *d, int i, char *out, size_t cap, size_t *outlen)
{
    if (i < 0 || i >= d->n || d->tok[i].type != FS_JSON_STRING) return FS_EINVAL;
    const char *s = d->js + d->tok[i].start, *e = d->js + d->tok[i].end;
    size_t o = 0;
    /* The usual string has no escape: one copy (every reservation decodes two). */
    if (!memchr(s, '\\', (size_t)(e - s))) {
        if ((size_t)(e - s) >= cap) return FS_EINVAL;
        memcpy(out, s, (size_t)(e - s));
        out[e - s] = 0;
        if (outlen) *outlen = (size_t)(e - s);
        return FS_OK;
    }
    while (s < e) {
        unsigned cp;
        if (*s != '\\') {
            if (o + 1 >= cap) return FS_EINVAL;
            out[o++] = *s++;
            continue;
        }
        s++;
        if (s >= e) return FS_EINVAL;
        char c = *s++;
        switch (c) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (e - s < 4 || fs__hex4(s, &cp)) return FS_EINVAL;
            s += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                unsigned lo;
                if (e - s < 6 || s[0] != '\\' || s[1] != 'u' || fs__hex4(s + 2, &lo) ||
                    lo < 0xdc00 || lo > 0xdfff)
                    return FS_EINVAL;
                s += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                return FS_EINVAL;
            }
            break;
        default: return FS_EINVAL;
        }
        char u[4];
        size_t n;
        if (cp < 0x80) u[0] = (char)cp, n = 1;
        else if (cp < 0x800) u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 63)), n = 2;
        else if (cp < 0x10000)
            u[0] = (char)(0xe0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 63)),
            u[2] = (char)(0x80 | (cp & 63)), n = 3;
        else
            u[0] = (char)(0xf0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 63)),
            u[2] = (char)(0x80 | ((cp >> 6) & 63)), u[3] = (char)(0x80 | (cp & 63)), n = 4;
        if (o + n >= cap) return FS_EINVAL;
        memcpy(out + o, u, n);
        o += n;
    }
    out[o] = 0;
    if (outlen) *outlen = o;
    return FS_OK;
}

int fs_json_int(const fs_json_doc_t *d, int i, int64_t *out)
{
    if (i < 0 || i >= d->n || d->tok[i].type != FS_JSON_PRIMITIVE) return FS_EINVAL;
    const char *s = d->js + d->tok[i].start, *e = d->js + d->tok[i].end;
    int neg = 0;
    if (s < e && *s == '-') neg = 1, s++;
    if (s == e || e - s > 15) return FS_EINVAL;
    int64_t v = 0;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9') return FS_EINVAL;
        v = v * 10 + (*s - '0');
    }
    *out = neg ? -v : v;
    return FS_OK;
}

int fs_json_is_null(const fs_json_doc_t *d, int i)
{
    return i >= 0 && i < d->n && d->tok[i].type == FS_JSON_PRIMITIVE &&
           d->tok[i].end - d->tok[i].start == 4 && memcmp(d->js + d->tok[i].start, "null", 4) == 0;
}
