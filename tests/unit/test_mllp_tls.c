/* test_mllp_tls.c - the MLLP listener's TLS, mutual TLS with senders per certificate, allow
 * list and plaintext rule. An in-process listener (the engine in pass-through mode, MLLP source,
 * the file sink: no broker needed for what this tests) and OpenSSL clients on 127.0.0.1, with a
 * CA, server and client certificates made here for the run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cg_cli.h"
#include "cg_config.h"
#include "cg_gateway.h"
#include "cg_mllp.h"
#include "mllp/mllp_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char dir[64];

/* ---- certificates ---- */

static EVP_PKEY *make_key(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(k);
    return k;
}

/* A certificate for cn with key, signed by issuer (NULL: self-signed; is_ca: a CA). */
static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, int is_ca)
{
    static long serial = 1;
    X509 *c = X509_new();
    X509_set_version(c, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c), serial++);
    X509_gmtime_adj(X509_getm_notBefore(c), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c), 86400);
    X509_set_pubkey(c, key);
    X509_NAME *n = X509_get_subject_name(c);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : n);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : c, c, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints,
                                              is_ca ? "critical,CA:TRUE" : "CA:FALSE");
    X509_add_ext(c, ext, -1);
    X509_EXTENSION_free(ext);
    if (!is_ca) {
        ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, "IP:127.0.0.1");
        X509_add_ext(c, ext, -1);
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(c, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    return c;
}

static void write_pem(const char *name, X509 *cert, EVP_PKEY *key)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    if (cert)
        PEM_write_X509(f, cert);
    if (key)
        PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
}

/* A CRL of issuer revoking cert (NULL: none), signed with issuer_key. */
static void write_crl(const char *name, X509 *issuer, EVP_PKEY *issuer_key, X509 *cert)
{
    X509_CRL *crl = X509_CRL_new();
    X509_CRL_set_version(crl, 1);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer));
    ASN1_TIME *t = X509_gmtime_adj(NULL, -3600);
    X509_CRL_set1_lastUpdate(crl, t);
    X509_gmtime_adj(t, 86400);
    X509_CRL_set1_nextUpdate(crl, t);
    ASN1_TIME_free(t);
    if (cert) {
        X509_REVOKED *r = X509_REVOKED_new();
        X509_REVOKED_set_serialNumber(r, X509_get_serialNumber(cert));
        ASN1_TIME *when = X509_gmtime_adj(NULL, -60);
        X509_REVOKED_set_revocationDate(r, when);
        ASN1_TIME_free(when);
        X509_CRL_add0_revoked(crl, r);
    }
    X509_CRL_sort(crl);
    assert_true(X509_CRL_sign(crl, issuer_key, EVP_sha256()) > 0);
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    PEM_write_X509_CRL(f, crl);
    fclose(f);
    X509_CRL_free(crl);
}

static int setup_certs(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/cg-mllp-tls-XXXXXX");
    assert_non_null(mkdtemp(dir));
    EVP_PKEY *ca_key = make_key(), *srv_key = make_key(), *lab_key = make_key(),
             *rogue_key = make_key();
    X509 *ca = make_cert("cohortgate test CA", ca_key, NULL, NULL, 1);
    X509 *srv = make_cert("127.0.0.1", srv_key, ca, ca_key, 0);
    X509 *lab = make_cert("lab.example.org", lab_key, ca, ca_key, 0);
    X509 *rogue = make_cert("lab.example.org", rogue_key, NULL, NULL, 0); /* not from the CA */
    EVP_PKEY *gone_key = make_key();
    X509 *gone = make_cert("lab.example.org", gone_key, ca, ca_key, 0); /* revoked below */
    write_pem("revoked.pem", gone, gone_key);
    write_crl("crl.pem", ca, ca_key, gone);
    write_crl("crl-empty.pem", ca, ca_key, NULL);
    X509_free(gone);
    EVP_PKEY_free(gone_key);
    write_pem("ca.pem", ca, NULL);
    write_pem("server.pem", srv, NULL);
    write_pem("server.key", NULL, srv_key);
    write_pem("lab.pem", lab, lab_key);
    write_pem("rogue.pem", rogue, rogue_key);
    X509_free(ca);
    X509_free(srv);
    X509_free(lab);
    X509_free(rogue);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(srv_key);
    EVP_PKEY_free(lab_key);
    EVP_PKEY_free(rogue_key);
    return 0;
}

static int teardown_certs(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- an in-process listener writing to a file ---- */

typedef struct listener {
    cg_config_t *cfg;
    cg_gateway_t *gw;
    pthread_t th;
    int port;
    char out[128];
} listener_t;

static void *listener_main(void *arg)
{
    listener_t *l = arg;
    char errstr[512];
    if (cg_gateway_run(l->gw, errstr, sizeof(errstr)))
        fprintf(stderr, "listen: %s\n", errstr);
    return NULL;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
        close(fd);
        return -1;
    }
    return fd;
}

static cg_config_t *load(const char *listen_members, int port, const char *out)
{
    char text[4096];
    snprintf(text, sizeof(text),
             "{\"source\":\"mllp\",\"listen\":{\"address\":\"127.0.0.1:%d\",\"topic\":\"raw\","
             "\"read_timeout_ms\":1000%s},"
             "\"output\":{\"sink\":\"file\",\"file\":{\"path\":\"%s\"}},"
             "\"kafka\":{\"bootstrap.servers\":\"127.0.0.1:9\"},"
             "\"pseudonym\":{\"key_file\":\"" CG_SOURCE_DIR "/tests/golden/key\"},"
             "\"log\":{\"level\":\"error\"},\"delivery\":{\"drain_timeout_ms\":2000}}",
             port, listen_members, out);
    cg_error_t err;
    cg_config_t *cfg = cg_config_load_string(text, "<test>", NULL, &err);
    if (!cfg)
        fprintf(stderr, "config: %s\n", err.text);
    return cfg;
}

static void listener_start(listener_t *l, const char *listen_members)
{
    memset(l, 0, sizeof(*l));
    l->port = free_port();
    snprintf(l->out, sizeof(l->out), "%s/out-%d.ndjson", dir, l->port);
    l->cfg = load(listen_members, l->port, l->out);
    assert_non_null(l->cfg);
    char errstr[512];
    cg_gateway_opts_t o = {.passthrough = 1};
    l->gw = cg_gateway_new(l->cfg, &o, errstr, sizeof(errstr));
    if (!l->gw)
        fprintf(stderr, "new: %s\n", errstr);
    assert_non_null(l->gw);
    assert_int_equal(pthread_create(&l->th, NULL, listener_main, l), 0);
    for (int i = 0; i < 500; i++) {
        int fd = tcp_connect(l->port);
        if (fd >= 0) {
            close(fd);
            return;
        }
        usleep(10000);
    }
    fail_msg("the listener did not start");
}

/* Stops the listener; what it wrote, in a malloc'd string. */
static char *listener_stop(listener_t *l)
{
    cg_gateway_stop(l->gw);
    pthread_join(l->th, NULL);
    cg_gateway_destroy(l->gw);
    cg_config_destroy(l->cfg);
    FILE *f = fopen(l->out, "r");
    char *s = calloc(1, 1 << 16);
    if (f) {
        size_t n = fread(s, 1, (1 << 16) - 1, f);
        s[n] = '\0';
        fclose(f);
    }
    return s;
}

/* ---- a TLS MLLP client ---- */

typedef struct client {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
} client_t;

/* Connects with TLS, presenting cert (a PEM with certificate and key under dir; NULL: none).
 * 0 when the handshake is done; -1 when it failed. */
static int client_open(client_t *c, int port, const char *cert)
{
    memset(c, 0, sizeof(*c));
    c->ctx = SSL_CTX_new(TLS_client_method());
    char path[128];
    snprintf(path, sizeof(path), "%s/ca.pem", dir);
    assert_int_equal(SSL_CTX_load_verify_locations(c->ctx, path, NULL), 1);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (cert) {
        snprintf(path, sizeof(path), "%s/%s", dir, cert);
        assert_int_equal(SSL_CTX_use_certificate_file(c->ctx, path, SSL_FILETYPE_PEM), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(c->ctx, path, SSL_FILETYPE_PEM), 1);
    }
    c->fd = tcp_connect(port);
    assert_true(c->fd >= 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    c->ssl = SSL_new(c->ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set1_host(c->ssl, "127.0.0.1");
    if (SSL_connect(c->ssl) != 1)
        return -1;
    /* TLS 1.3: a refused client certificate shows on the first read, not in SSL_connect */
    return 0;
}

static void client_close(client_t *c)
{
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    SSL_CTX_free(c->ctx);
}

/* Sends one framed message and reads its ACK (unframed) into buf: its length, or -1. */
static int client_roundtrip(client_t *c, const char *msg, char *buf, size_t size)
{
    char frame[2048];
    int n = snprintf(frame, sizeof(frame), "\x0b%s\x1c\r", msg);
    if (SSL_write(c->ssl, frame, n) != n)
        return -1;
    size_t got = 0;
    while (got < size - 1) {
        int r = SSL_read(c->ssl, buf + got, (int)(size - 1 - got));
        if (r <= 0)
            return -1;
        got += (size_t)r;
        buf[got] = '\0';
        char *eb = memchr(buf, 0x1c, got);
        if (eb) {
            size_t len = (size_t)(eb - buf) - 1;
            memmove(buf, buf + 1, len);
            buf[len] = '\0';
            return (int)len;
        }
    }
    return -1;
}

static const char *msg_for(const char *facility, const char *control_id, char *out, size_t size)
{
    snprintf(out, size,
             "MSH|^~\\&|LIS|%s|CG|CG|20240314101500||ORU^R01|%s|P|2.5\r"
             "PID|1||12345^^^HOSP^MR||DOE^JANE||19700101|F\r",
             facility, control_id);
    return out;
}

/* ---- tests ---- */

#define MTLS                                                                                       \
    ",\"tls\":{\"cert_file\":\"%s/server.pem\",\"key_file\":\"%s/server.key\","                    \
    "\"client_ca_file\":\"%s/ca.pem\",\"senders\":{\"lab.example.org\":\"LAB, LAB2\"}}"

static void mtls_listener(listener_t *l)
{
    char members[1024];
    snprintf(members, sizeof(members), MTLS, dir, dir, dir);
    listener_start(l, members);
}

/* A client with a certificate of the CA, sending for a facility its certificate is mapped to:
 * acknowledged AA after it was written, byte for byte (MSA-2 = MSH-10). */
static void test_mtls_sender_stored(void **state)
{
    (void)state;
    listener_t l;
    mtls_listener(&l);
    client_t c;
    assert_int_equal(client_open(&c, l.port, "lab.pem"), 0);
    char m[512], ack[2048];
    assert_true(client_roundtrip(&c, msg_for("LAB^1.2.3^ISO", "TLS0001", m, sizeof(m)), ack,
                                 sizeof(ack)) > 0);
    assert_non_null(strstr(ack, "MSA|AA|TLS0001"));
    assert_true(client_roundtrip(&c, msg_for("LAB2", "TLS0002", m, sizeof(m)), ack, sizeof(ack)) >
                0);
    assert_non_null(strstr(ack, "MSA|AA|TLS0002"));
    client_close(&c);
    char *out = listener_stop(&l);
    assert_non_null(strstr(out, "TLS0001"));
    assert_non_null(strstr(out, "TLS0002"));
    free(out);
}

/* The same certificate sending for another facility: refused (AR), not written. */
static void test_mtls_wrong_facility_refused(void **state)
{
    (void)state;
    listener_t l;
    mtls_listener(&l);
    client_t c;
    assert_int_equal(client_open(&c, l.port, "lab.pem"), 0);
    char m[512], ack[2048];
    assert_true(client_roundtrip(&c, msg_for("ICU", "TLS0003", m, sizeof(m)), ack, sizeof(ack)) >
                0);
    assert_non_null(strstr(ack, "MSA|AR|TLS0003"));
    assert_non_null(strstr(ack, "sending facility"));
    /* the connection stays usable for what it may send */
    assert_true(client_roundtrip(&c, msg_for("LAB", "TLS0004", m, sizeof(m)), ack, sizeof(ack)) >
                0);
    assert_non_null(strstr(ack, "MSA|AA|TLS0004"));
    client_close(&c);
    char *out = listener_stop(&l);
    assert_null(strstr(out, "TLS0003"));
    assert_non_null(strstr(out, "TLS0004"));
    free(out);
}

/* No client certificate, or one the CA did not sign, or plaintext: no message gets through. */
static void test_mtls_refuses_unknown_clients(void **state)
{
    (void)state;
    listener_t l;
    mtls_listener(&l);
    const char *certs[] = {NULL, "rogue.pem"};
    for (int i = 0; i < 2; i++) {
        client_t c;
        char m[512], ack[2048];
        if (client_open(&c, l.port, certs[i]) == 0)
            assert_int_equal(
                client_roundtrip(&c, msg_for("LAB", "TLS0005", m, sizeof(m)), ack, sizeof(ack)),
                -1);
        client_close(&c);
    }
    int fd = tcp_connect(l.port); /* MLLP in plaintext to the TLS port */
    assert_true(fd >= 0);
    char m[512];
    msg_for("LAB", "TLS0006", m, sizeof(m));
    char frame[1024];
    int n = snprintf(frame, sizeof(frame), "\x0b%s\x1c\r", m);
    send(fd, frame, (size_t)n, MSG_NOSIGNAL);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char buf[256];
    ssize_t r = poll(&p, 1, 3000) > 0 ? recv(fd, buf, sizeof(buf), 0) : -1;
    assert_true(r <= 0 || !memchr(buf, 0x0b, (size_t)r)); /* closed or an alert, never an ACK */
    close(fd);
    char *out = listener_stop(&l);
    assert_null(strstr(out, "TLS0005"));
    assert_null(strstr(out, "TLS0006"));
    free(out);
}

/* `cohortgate send` over mutual TLS: LF line ends sent as CR, each ACK checked; exit 0 only when
 * every message was accepted. */
static void test_send_command(void **state)
{
    (void)state;
    listener_t l;
    mtls_listener(&l);
    char good[128], bad[128], addr[64], ca[128], cert[128], m[512];
    snprintf(good, sizeof(good), "%s/good.hl7", dir);
    snprintf(bad, sizeof(bad), "%s/bad.hl7", dir);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", l.port);
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    snprintf(cert, sizeof(cert), "%s/lab.pem", dir);
    FILE *f = fopen(good, "w");
    msg_for("LAB", "SEND001", m, sizeof(m));
    for (char *p = m; *p; p++)
        if (*p == '\r')
            *p = '\n';
    fputs(m, f);
    fclose(f);
    f = fopen(bad, "w");
    fputs(msg_for("ICU", "SEND002", m, sizeof(m)), f);
    fclose(f);
    char *ok_argv[] = {"send", "--to", addr, "--tls-ca", ca, "--tls-cert", cert, good, NULL};
    assert_int_equal(cg_cli_send(8, ok_argv), CG_EXIT_OK);
    char *bad_argv[] = {"send",       "-q", "--to", addr, "--tls-ca", ca,
                        "--tls-cert", cert, good,   bad,  NULL};
    assert_int_equal(cg_cli_send(10, bad_argv), CG_EXIT_FAILURE);
    char *nocert_argv[] = {"send", "--to", addr, "--tls-ca", ca, "--timeout", "2000", good, NULL};
    assert_int_equal(cg_cli_send(8, nocert_argv), CG_EXIT_FAILURE);
    char *out = listener_stop(&l);
    assert_non_null(strstr(out, "SEND001"));
    assert_null(strstr(out, "SEND002"));
    assert_null(strstr(out, "\\n")); /* sent with CR segment ends */
    free(out);
}

/* listen.allow: a peer outside it is closed before anything is read. */
static void test_allow_list(void **state)
{
    (void)state;
    listener_t l;
    listener_start(&l, ",\"allow\":\"10.0.0.0/8, fd00::/8\"");
    int fd = tcp_connect(l.port);
    assert_true(fd >= 0);
    char m[512], frame[1024], buf[256];
    int n = snprintf(frame, sizeof(frame), "\x0b%s\x1c\r", msg_for("LAB", "ALLOW01", m, sizeof(m)));
    send(fd, frame, (size_t)n, MSG_NOSIGNAL);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_true(poll(&p, 1, 3000) > 0);
    assert_true(recv(fd, buf, sizeof(buf), 0) <= 0);
    close(fd);
    char *out = listener_stop(&l);
    assert_null(strstr(out, "ALLOW01"));
    free(out);
    listener_start(&l, ",\"allow\":\"10.0.0.0/8, 127.0.0.1\""); /* now it is on the list */
    fd = tcp_connect(l.port);
    assert_true(fd >= 0);
    send(fd, frame, (size_t)n, MSG_NOSIGNAL);
    p.fd = fd;
    assert_true(poll(&p, 1, 3000) > 0);
    ssize_t r = recv(fd, buf, sizeof(buf) - 1, 0);
    assert_true(r > 0);
    buf[r] = '\0';
    assert_non_null(strstr(buf, "MSA|AA|ALLOW01"));
    close(fd);
    out = listener_stop(&l);
    assert_non_null(strstr(out, "ALLOW01"));
    free(out);
}

/* listen.tls.crl_file: a revoked client certificate is refused in the handshake while another
 * of the same CA still sends; a file with no CRL in it does not start. */
static void test_crl_revoked_client(void **state)
{
    (void)state;
    char members[1200];
    snprintf(members, sizeof(members),
             ",\"tls\":{\"cert_file\":\"%s/server.pem\",\"key_file\":\"%s/server.key\","
             "\"client_ca_file\":\"%s/ca.pem\",\"crl_file\":\"%s/crl.pem\"}",
             dir, dir, dir, dir);
    listener_t l;
    listener_start(&l, members);
    client_t c;
    char m[512], ack[2048];
    if (client_open(&c, l.port, "revoked.pem") == 0)
        assert_int_equal(
            client_roundtrip(&c, msg_for("LAB", "CRL0001", m, sizeof(m)), ack, sizeof(ack)), -1);
    client_close(&c);
    assert_int_equal(client_open(&c, l.port, "lab.pem"), 0);
    assert_true(client_roundtrip(&c, msg_for("LAB", "CRL0002", m, sizeof(m)), ack, sizeof(ack)) >
                0);
    assert_non_null(strstr(ack, "MSA|AA|CRL0002"));
    client_close(&c);
    char *out = listener_stop(&l);
    assert_null(strstr(out, "CRL0001"));
    assert_non_null(strstr(out, "CRL0002"));
    free(out);
    /* the CA's CRL without that entry: the same certificate gets through */
    snprintf(members, sizeof(members),
             ",\"tls\":{\"cert_file\":\"%s/server.pem\",\"key_file\":\"%s/server.key\","
             "\"client_ca_file\":\"%s/ca.pem\",\"crl_file\":\"%s/crl-empty.pem\"}",
             dir, dir, dir, dir);
    listener_start(&l, members);
    assert_int_equal(client_open(&c, l.port, "revoked.pem"), 0);
    assert_true(client_roundtrip(&c, msg_for("LAB", "CRL0003", m, sizeof(m)), ack, sizeof(ack)) >
                0);
    assert_non_null(strstr(ack, "MSA|AA|CRL0003"));
    client_close(&c);
    free(listener_stop(&l));
}

/* Copies dir/from over dir/to (through a rename, as an operator's tooling would). */
static void swap_file(const char *from, const char *to)
{
    char a[256], b[256], tmp[256];
    snprintf(a, sizeof(a), "%s/%s", dir, from);
    snprintf(b, sizeof(b), "%s/%s", dir, to);
    snprintf(tmp, sizeof(tmp), "%s/%s.tmp", dir, to);
    FILE *in = fopen(a, "rb"), *out = fopen(tmp, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
    assert_int_equal(rename(tmp, b), 0);
}

/* Reloads (what SIGHUP does) and waits until the listener has. */
static void reload_and_wait(listener_t *l, uint64_t *failures)
{
    cg_gateway_stats_t st;
    cg_gateway_get_stats(l->gw, &st);
    uint64_t before = st.reloads;
    cg_gateway_reload(l->gw);
    for (int i = 0; i < 500 && st.reloads == before; i++) {
        usleep(10000);
        cg_gateway_get_stats(l->gw, &st);
    }
    assert_true(st.reloads > before);
    *failures = st.reload_failures;
}

/* SIGHUP re-reads listen.tls.crl_file: a certificate revoked after the start is refused on its
 * next connection, while the session it already had goes on; a CRL file that does not load
 * leaves the running one. */
static void test_crl_reloaded(void **state)
{
    (void)state;
    swap_file("crl-empty.pem", "crl-live.pem");
    char members[1200];
    snprintf(members, sizeof(members),
             ",\"tls\":{\"cert_file\":\"%s/server.pem\",\"key_file\":\"%s/server.key\","
             "\"client_ca_file\":\"%s/ca.pem\",\"crl_file\":\"%s/crl-live.pem\"}",
             dir, dir, dir, dir);
    listener_t l;
    listener_start(&l, members);
    client_t open_one, c;
    char m[512], ack[2048];
    assert_int_equal(client_open(&open_one, l.port, "revoked.pem"), 0);
    assert_true(
        client_roundtrip(&open_one, msg_for("LAB", "HUP0001", m, sizeof(m)), ack, sizeof(ack)) > 0);
    assert_non_null(strstr(ack, "MSA|AA|HUP0001"));

    /* the certificate is revoked and the listener told */
    swap_file("crl.pem", "crl-live.pem");
    uint64_t failures;
    reload_and_wait(&l, &failures);
    assert_int_equal(failures, 0);
    if (client_open(&c, l.port, "revoked.pem") == 0)
        assert_int_equal(
            client_roundtrip(&c, msg_for("LAB", "HUP0002", m, sizeof(m)), ack, sizeof(ack)), -1);
    client_close(&c);
    assert_int_equal(client_open(&c, l.port, "lab.pem"), 0);
    assert_true(client_roundtrip(&c, msg_for("LAB", "HUP0003", m, sizeof(m)), ack, sizeof(ack)) >
                0);
    client_close(&c);
    /* the session accepted before goes on */
    assert_true(
        client_roundtrip(&open_one, msg_for("LAB", "HUP0004", m, sizeof(m)), ack, sizeof(ack)) > 0);
    assert_non_null(strstr(ack, "MSA|AA|HUP0004"));
    client_close(&open_one);

    /* a CRL file that is not one: the reload fails, the revocation stays in force */
    swap_file("server.key", "crl-live.pem");
    reload_and_wait(&l, &failures);
    assert_int_equal(failures, 1);
    if (client_open(&c, l.port, "revoked.pem") == 0)
        assert_int_equal(
            client_roundtrip(&c, msg_for("LAB", "HUP0005", m, sizeof(m)), ack, sizeof(ack)), -1);
    client_close(&c);
    char *out = listener_stop(&l);
    assert_non_null(strstr(out, "HUP0001"));
    assert_null(strstr(out, "HUP0002"));
    assert_non_null(strstr(out, "HUP0003"));
    assert_non_null(strstr(out, "HUP0004"));
    assert_null(strstr(out, "HUP0005"));
    free(out);
}

/* What check -c refuses before binding: plaintext off loopback unless said, a bad allow list,
 * TLS files that do not load, senders without a client CA. */
static void test_config_checks(void **state)
{
    (void)state;
    struct {
        const char *address, *members, *want; /* want: NULL for accepted */
    } cases[] = {
        {"0.0.0.0:0", "", "not a loopback address"},
        {"0.0.0.0:0", ",\"plaintext\":true", NULL},
        {"[::1]:0", "", NULL},
        {"127.0.0.1:0", ",\"allow\":\"10.0.0.0/33\"", "listen.allow"},
        {"127.0.0.1:0", ",\"allow\":\"example.org\"", "listen.allow"},
        {"127.0.0.1:0", ",\"tls\":{\"cert_file\":\"%s/server.pem\"}", "go together"},
        {"127.0.0.1:0", ",\"tls\":{\"cert_file\":\"%s/ca.pem\",\"key_file\":\"%s/server.key\"}",
         "key_file"},
        {"127.0.0.1:0", ",\"tls\":{\"cert_file\":\"%s/nope.pem\",\"key_file\":\"%s/server.key\"}",
         "cert_file"},
        {"127.0.0.1:0",
         ",\"tls\":{\"cert_file\":\"%s/server.pem\",\"key_file\":\"%s/server.key\","
         "\"senders\":{\"a\":\"B\"}}",
         "client_ca_file"},
        {"0.0.0.0:0", ",\"tls\":{\"cert_file\":\"%s/server.pem\",\"key_file\":\"%s/server.key\"}",
         NULL},
        /* a CRL without a client CA; a CRL file that holds none */
        {"127.0.0.1:0",
         ",\"tls\":{\"cert_file\":\"%s/server.pem\",\"key_file\":\"%s/server.key\","
         "\"crl_file\":\"%s/crl.pem\"}",
         "client_ca_file"},
        {"127.0.0.1:0",
         ",\"tls\":{\"cert_file\":\"%s/server.pem\",\"key_file\":\"%s/server.key\","
         "\"client_ca_file\":\"%s/ca.pem\",\"crl_file\":\"%s/ca.pem\"}",
         "listen.tls.crl_file"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char members[1024], text[2048];
        snprintf(members, sizeof(members), cases[i].members, dir, dir, dir, dir);
        snprintf(text, sizeof(text),
                 "{\"source\":\"mllp\",\"listen\":{\"address\":\"%s\"%s},"
                 "\"kafka\":{\"bootstrap.servers\":\"127.0.0.1:9\"},"
                 "\"pseudonym\":{\"key_file\":\"" CG_SOURCE_DIR "/tests/golden/key\"}}",
                 cases[i].address, members);
        cg_error_t err;
        cg_config_t *cfg = cg_config_load_string(text, "<test>", NULL, &err);
        if (!cfg)
            fprintf(stderr, "case %zu: %s\n", i, err.text);
        assert_non_null(cfg);
        char errstr[512] = "";
        int rc = cg_mllp_config_check(cfg, errstr, sizeof(errstr));
        if (cases[i].want) {
            if (rc == 0 || !strstr(errstr, cases[i].want))
                fail_msg("case %zu: want '%s', got rc %d '%s'", i, cases[i].want, rc, errstr);
            assert_null(strstr(errstr, "PRIVATE KEY")); /* never the key's content */
        } else if (rc) {
            fail_msg("case %zu: refused: %s", i, errstr);
        }
        cg_config_destroy(cfg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mtls_sender_stored),
        cmocka_unit_test(test_mtls_wrong_facility_refused),
        cmocka_unit_test(test_mtls_refuses_unknown_clients),
        cmocka_unit_test(test_send_command),
        cmocka_unit_test(test_allow_list),
        cmocka_unit_test(test_crl_revoked_client),
        cmocka_unit_test(test_crl_reloaded),
        cmocka_unit_test(test_config_checks),
    };
    return cmocka_run_group_tests(tests, setup_certs, teardown_certs);
}
