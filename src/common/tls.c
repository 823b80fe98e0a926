/* OpenSSL client engine over memory BIOs (see tls.h). */
#include "tls.h"
#include "log.h"
#include "flashsale/error.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

struct fs_tls_ctx {
    SSL_CTX *ssl_ctx;
};

struct fs_tls {
    SSL *ssl;
    BIO *rbio; /* ciphertext from the peer, written by fs_tls_feed */
    BIO *wbio; /* ciphertext for the peer, drained by fs_tls_take_output */
};

/* The first queued OpenSSL error as text (and the queue cleared), or fallback. */
static void fs__ssl_error(char *err, size_t errcap, const char *what, const char *fallback)
{
    unsigned long e = ERR_get_error();
    char buf[256];
    if (e) ERR_error_string_n(e, buf, sizeof buf);
    snprintf(err, errcap, "%s: %s", what, e ? buf : fallback);
    ERR_clear_error();
}

int fs_tls_ctx_new(fs_tls_ctx_t **out, const char *ca_file, char *err, size_t errcap)
{
    ERR_clear_error();
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    if (!c) {
        fs__ssl_error(err, errcap, "tls", "cannot create a context");
        return FS_EINVAL;
    }
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    /* Partial writes would complicate nothing here (memory BIO), but keep records whole. */
    SSL_CTX_set_mode(c, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    int ok = ca_file && ca_file[0] ? SSL_CTX_load_verify_locations(c, ca_file, NULL)
                                   : SSL_CTX_set_default_verify_paths(c);
    if (ok != 1) {
        char what[300];
        snprintf(what, sizeof what, "cannot load CA file %s", ca_file && ca_file[0] ? ca_file : "(system store)");
        fs__ssl_error(err, errcap, what, "no certificate found");
        SSL_CTX_free(c);
        return FS_EINVAL;
    }
    fs_tls_ctx_t *ctx = fs_xcalloc(1, sizeof *ctx);
    ctx->ssl_ctx = c;
    *out = ctx;
    return FS_OK;
}

int fs_tls_ctx_set_cert(fs_tls_ctx_t *ctx, const char *cert_file, const char *key_file, char *err,
                        size_t errcap)
{
    ERR_clear_error();
    char what[300];
    if (SSL_CTX_use_certificate_chain_file(ctx->ssl_ctx, cert_file) != 1) {
        snprintf(what, sizeof what, "cannot load certificate file %s", cert_file);
        fs__ssl_error(err, errcap, what, "no certificate found");
        return FS_EINVAL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx->ssl_ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx->ssl_ctx) != 1) {
        snprintf(what, sizeof what, "cannot use key file %s", key_file);
        fs__ssl_error(err, errcap, what, "the key does not match the certificate");
        return FS_EINVAL;
    }
    return FS_OK;
}

void fs_tls_ctx_free(fs_tls_ctx_t *ctx)
{
    if (!ctx) return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
}

fs_tls_t *fs_tls_new(fs_tls_ctx_t *ctx, const char *host, int host_is_ip)
{
    fs_tls_t *t = fs_xcalloc(1, sizeof *t);
    t->ssl = SSL_new(ctx->ssl_ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) fs_panic(__FILE__, __LINE__, "out of memory (OpenSSL)");
    /* An empty read BIO means "more to come", not end of file. */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* the SSL owns both BIOs now */
    SSL_set_connect_state(t->ssl);
    if (host_is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host);
    } else {
        SSL_set_tlsext_host_name(t->ssl, host);
        SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        SSL_set1_host(t->ssl, host);
    }
    return t;
}

void fs_tls_free(fs_tls_t *t)
{
    if (!t) return;
    SSL_free(t->ssl);
    free(t);
}

void fs_tls_feed(fs_tls_t *t, const char *p, size_t n)
{
    while (n > 0) {
        int chunk = n > 1 << 30 ? 1 << 30 : (int)n;
        int w = BIO_write(t->rbio, p, chunk);
        fs_assert(w == chunk); /* a memory BIO takes everything */
        p += w;
        n -= (size_t)w;
    }
}

int fs_tls_handshake(fs_tls_t *t, char *err, size_t errcap)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1) return FS_OK;
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return FS_EAGAIN;
    long v = SSL_get_verify_result(t->ssl);
    if (v != X509_V_OK) {
        snprintf(err, errcap, "certificate verify failed: %s", X509_verify_cert_error_string(v));
        ERR_clear_error();
    } else {
        fs__ssl_error(err, errcap, "handshake failed", "connection closed");
    }
    return FS_EPROTO;
}

int fs_tls_write(fs_tls_t *t, const char *p, size_t n, char *err, size_t errcap)
{
    while (n > 0) {
        ERR_clear_error();
        int chunk = n > 1 << 30 ? 1 << 30 : (int)n;
        int w = SSL_write(t->ssl, p, chunk);
        if (w <= 0) {
            fs__ssl_error(err, errcap, "write failed", "unexpected state");
            return FS_EPROTO;
        }
        p += w;
        n -= (size_t)w;
    }
    return FS_OK;
}

int fs_tls_read(fs_tls_t *t, char *out, size_t cap, char *err, size_t errcap)
{
    ERR_clear_error();
    int r = SSL_read(t->ssl, out, cap > 1 << 30 ? 1 << 30 : (int)cap);
    if (r > 0) return r;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return FS_EAGAIN;
    if (e == SSL_ERROR_ZERO_RETURN) return 0;
    fs__ssl_error(err, errcap, "read failed", "protocol error");
    return FS_EPROTO;
}

size_t fs_tls_take_output(fs_tls_t *t, fs_buf_t *out)
{
    size_t total = 0;
    size_t pending;
    while ((pending = BIO_ctrl_pending(t->wbio)) > 0) {
        fs_buf_reserve(out, pending);
        int r = BIO_read(t->wbio, out->data + out->len, (int)pending);
        if (r <= 0) break;
        out->len += (size_t)r;
        total += (size_t)r;
    }
    return total;
}
