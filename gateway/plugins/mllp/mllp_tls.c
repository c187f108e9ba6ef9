/* mllp_tls.c - TLS for the MLLP listener, with OpenSSL: the server context (certificate, key,
 * optional client CA for mutual TLS), the non-blocking handshake and record I/O of one
 * connection, and which sending facilities (MSH-4) a client certificate may send for.
 *
 * TLS 1.2 at least, the library's default ciphers (Debian's system-wide policy applies); no
 * session tickets or renegotiation are needed by MLLP peers, so none are offered. The key
 * file's path may be logged, its content never is. */
#include "mllp_int.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <stdlib.h>
#include <string.h>

struct mllp_tls {
    SSL_CTX *ctx;
    int mtls;                      /* client certificates required and verified */
    const cg_config_kv_t *senders; /* certificate CN -> "FAC1,FAC2" (borrowed from conf) */
    size_t n_senders;
};

/* OpenSSL's error queue as one line, and the queue emptied (it is per thread). */
static void ssl_reason(char *out, size_t n)
{
    unsigned long e = ERR_get_error();
    if (!e)
        snprintf(out, n, "unknown TLS error");
    else
        ERR_error_string_n(e, out, n);
    ERR_clear_error();
}

mllp_tls_t *mllp_tls_new(const mllp_conf_t *cf, char *errstr, size_t errstr_size)
{
    if (!cf->tls_cert_file != !cf->tls_key_file) {
        snprintf(errstr, errstr_size,
                 "listen.tls.cert_file and listen.tls.key_file go together: set both or neither");
        return NULL;
    }
    if (!cf->tls_cert_file) {
        if (cf->tls_client_ca_file || cf->n_tls_senders || cf->tls_crl_file) {
            snprintf(errstr, errstr_size, "listen.tls.%s needs listen.tls.cert_file and key_file",
                     cf->tls_client_ca_file ? "client_ca_file"
                     : cf->tls_crl_file     ? "crl_file"
                                            : "senders");
            return NULL;
        }
        errstr[0] = '\0';
        return NULL; /* plaintext */
    }
    if (cf->tls_crl_file && !cf->tls_client_ca_file) {
        snprintf(errstr, errstr_size,
                 "listen.tls.crl_file revokes client certificates: it needs "
                 "listen.tls.client_ca_file");
        return NULL;
    }
    if (cf->n_tls_senders && !cf->tls_client_ca_file) {
        snprintf(
            errstr, errstr_size,
            "listen.tls.senders names client certificates: it needs listen.tls.client_ca_file");
        return NULL;
    }
    mllp_tls_t *t = calloc(1, sizeof(*t));
    if (!t || !(t->ctx = SSL_CTX_new(TLS_server_method()))) {
        snprintf(errstr, errstr_size, "out of memory");
        free(t);
        return NULL;
    }
    char why[256];
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
    /* our output buffer may move between tries of one write, and short writes are fine */
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_use_certificate_chain_file(t->ctx, cf->tls_cert_file) != 1) {
        ssl_reason(why, sizeof(why));
        snprintf(errstr, errstr_size, "listen.tls.cert_file %s: %s", cf->tls_cert_file, why);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(t->ctx, cf->tls_key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(t->ctx) != 1) {
        ssl_reason(why, sizeof(why));
        snprintf(errstr, errstr_size, "listen.tls.key_file %s: %s", cf->tls_key_file, why);
        goto fail;
    }
    if (cf->tls_client_ca_file) {
        if (SSL_CTX_load_verify_locations(t->ctx, cf->tls_client_ca_file, NULL) != 1) {
            ssl_reason(why, sizeof(why));
            snprintf(errstr, errstr_size, "listen.tls.client_ca_file %s: %s",
                     cf->tls_client_ca_file, why);
            goto fail;
        }
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        t->mtls = 1;
    }
    if (cf->tls_crl_file) { /* the leaf's revocation checked against the CA's CRL */
        X509_STORE *store = SSL_CTX_get_cert_store(t->ctx);
        X509_LOOKUP *lu = store ? X509_STORE_add_lookup(store, X509_LOOKUP_file()) : NULL;
        if (!lu || X509_load_crl_file(lu, cf->tls_crl_file, X509_FILETYPE_PEM) < 1) {
            ssl_reason(why, sizeof(why));
            snprintf(errstr, errstr_size, "listen.tls.crl_file %s: no CRL could be read (%s)",
                     cf->tls_crl_file, why);
            goto fail;
        }
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    }
    t->senders = cf->tls_senders;
    t->n_senders = cf->n_tls_senders;
    return t;
fail:
    SSL_CTX_free(t->ctx);
    free(t);
    return NULL;
}

void mllp_tls_destroy(mllp_tls_t *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

SSL *mllp_tls_conn_new(mllp_tls_t *t, int fd)
{
    SSL *s = SSL_new(t->ctx);
    if (s && SSL_set_fd(s, fd) != 1) {
        SSL_free(s);
        return NULL;
    }
    if (s)
        SSL_set_accept_state(s);
    return s;
}

/* What an SSL call's result means for a non-blocking socket. */
static mllp_io_t io_result(SSL *s, int rc, char *why, size_t n)
{
    switch (SSL_get_error(s, rc)) {
    case SSL_ERROR_WANT_READ:
        return MLLP_IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return MLLP_IO_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return MLLP_IO_CLOSED;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        snprintf(why, n, "connection lost");
        return MLLP_IO_ERROR;
    default:
        ssl_reason(why, n);
        return MLLP_IO_ERROR;
    }
}

mllp_io_t mllp_tls_handshake(SSL *s, char *peer_cn, size_t cn_size, char *why, size_t why_size)
{
    int rc = SSL_do_handshake(s);
    if (rc != 1)
        return io_result(s, rc, why, why_size);
    peer_cn[0] = '\0';
    X509 *cert = SSL_get_peer_certificate(s);
    if (cert) { /* verified against the client CA by the handshake itself */
        X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, peer_cn,
                                  (int)cn_size);
        X509_free(cert);
    }
    return MLLP_IO_OK;
}

mllp_io_t mllp_tls_recv(SSL *s, void *buf, size_t n, size_t *got, char *why, size_t why_size)
{
    size_t r = 0;
    int rc = SSL_read_ex(s, buf, n, &r);
    *got = r;
    return rc == 1 ? MLLP_IO_OK : io_result(s, 0, why, why_size);
}

mllp_io_t mllp_tls_send(SSL *s, const void *buf, size_t n, size_t *sent, char *why, size_t why_size)
{
    size_t w = 0;
    int rc = SSL_write_ex(s, buf, n, &w);
    *sent = w;
    return rc == 1 ? MLLP_IO_OK : io_result(s, 0, why, why_size);
}

/* Whether text (comma-separated names, spaces around them ignored) lists name. */
static int list_has(const char *text, const char *name, size_t len)
{
    const char *p = text;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *s = p;
        while (*p && *p != ',')
            p++;
        const char *e = p;
        while (e > s && e[-1] == ' ')
            e--;
        if ((size_t)(e - s) == len && !memcmp(s, name, len))
            return 1;
    }
    return 0;
}

int mllp_tls_sender_allowed(const mllp_tls_t *t, const char *peer_cn, const char *facility,
                            size_t len)
{
    if (!t || !t->n_senders)
        return 1; /* no mapping: any verified client sends for any facility */
    for (size_t i = 0; i < t->n_senders; i++)
        if (!strcmp(t->senders[i].key, peer_cn))
            return list_has(t->senders[i].value, facility, len);
    return 0; /* a certificate the mapping does not name sends for no facility */
}
