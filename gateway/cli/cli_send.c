/* cli_send.c - `cohortgate send`: a small MLLP client, the hospital side of `cohortgate listen`.
 * Sends files of HL7 v2 over MLLP (plaintext or TLS, with a client certificate for mutual TLS),
 * one message at a time, waits for each acknowledgement and checks that it names the message
 * (MSA-2 = MSH-10); prints one line per message and a summary. Exit 0 when every message was
 * accepted (AA/CA), 1 otherwise. */
#include "cg_cli.h"
#include "cg_mllp.h"
#include "cg_metrics.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SEND_MAX_FILE (64u << 20)

typedef struct send_conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    int timeout_ms;
    cg_mllp_framer_t fr;
} send_conn_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cohortgate send [options] FILE...\n\n"
            "Send HL7 v2 messages over MLLP, as a hospital's interface engine does, one at a\n"
            "time, each waiting for its acknowledgement; print one line per message (file,\n"
            "MSH-10, the ACK code and its text) and a summary. A file holds one message, or\n"
            "MLLP frames (it starts with 0x0B) sent one by one. Segment ends (LF or CRLF) are\n"
            "sent as CR, as HL7 v2 wants, unless --raw. Exit 0 when every message was accepted\n"
            "(AA or CA), 1 otherwise.\n\n"
            "options:\n"
            "  -t, --to HOST:PORT     where cohortgate listen (or any MLLP server) listens\n"
            "                         (default 127.0.0.1:2575)\n"
            "      --timeout MS       wait this long for each ACK (default 30000)\n"
            "      --tls-ca FILE      speak TLS, verifying the server against these CA\n"
            "                         certificates (PEM)\n"
            "      --tls-cert FILE    mutual TLS: this client certificate and its key (PEM)\n"
            "      --raw              send each file's bytes as they are\n"
            "  -q, --quiet            print the summary only\n"
            "  -h, --help             show this help\n\n"
            "example: cohortgate send --to 127.0.0.1:2575 config/demo/feeds/*.hl7\n");
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int conn_open(send_conn_t *c, const char *to, const char *ca, const char *cert, char *errstr,
                     size_t n)
{
    char host[256], port[8];
    if (cg_metrics_listen_parse(to, host, sizeof(host), port, sizeof(port), errstr, n))
        return -1;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc) {
        snprintf(errstr, n, "%s: %s", to, gai_strerror(rc));
        return -1;
    }
    c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, ai->ai_addr, ai->ai_addrlen)) {
        snprintf(errstr, n, "%s: %s", to, strerror(errno));
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    if (!ca && !cert)
        return 0;
    c->ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    if (ca ? SSL_CTX_load_verify_locations(c->ctx, ca, NULL) != 1
           : SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
        snprintf(errstr, n, "--tls-ca %s: %s", ca ? ca : "(system)",
                 ERR_reason_error_string(ERR_get_error()));
        return -1;
    }
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (cert && (SSL_CTX_use_certificate_chain_file(c->ctx, cert) != 1 ||
                 SSL_CTX_use_PrivateKey_file(c->ctx, cert, SSL_FILETYPE_PEM) != 1)) {
        snprintf(errstr, n, "--tls-cert %s: %s", cert, ERR_reason_error_string(ERR_get_error()));
        return -1;
    }
    c->ssl = SSL_new(c->ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, host);
    SSL_set1_host(c->ssl, host);
    if (SSL_connect(c->ssl) != 1) {
        long v = SSL_get_verify_result(c->ssl);
        snprintf(errstr, n, "%s: TLS handshake failed: %s", to,
                 v != X509_V_OK ? X509_verify_cert_error_string(v)
                                : ERR_reason_error_string(ERR_get_error()));
        return -1;
    }
    return 0;
}

static void conn_close(send_conn_t *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    cg_mllp_framer_free(&c->fr);
}

static int conn_write(send_conn_t *c, const char *p, size_t n)
{
    while (n) {
        ssize_t w = c->ssl ? SSL_write(c->ssl, p, (int)(n > 1 << 30 ? 1 << 30 : n))
                           : send(c->fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            if (!c->ssl && w < 0 && errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads until a frame is complete (its content in c->fr.frame): 0, or -1 with the reason. */
static int conn_read_frame(send_conn_t *c, const char **why)
{
    int64_t until = now_ms() + c->timeout_ms;
    char buf[16384];
    for (;;) {
        if (!c->ssl || !SSL_pending(c->ssl)) {
            int left = (int)(until - now_ms());
            struct pollfd p = {.fd = c->fd, .events = POLLIN};
            if (left <= 0 || poll(&p, 1, left) <= 0) {
                *why = "no acknowledgement within --timeout";
                return -1;
            }
        }
        ssize_t r = c->ssl ? SSL_read(c->ssl, buf, sizeof(buf)) : recv(c->fd, buf, sizeof(buf), 0);
        if (r <= 0) {
            if (!c->ssl && r < 0 && errno == EINTR)
                continue;
            *why = "the server closed the connection without acknowledging";
            return -1;
        }
        size_t off = 0;
        while (off < (size_t)r) {
            size_t used = 0;
            cg_mllp_event_t ev = cg_mllp_framer_feed(&c->fr, buf + off, (size_t)r - off, &used);
            off += used;
            if (ev == CG_MLLP_TOO_BIG) {
                *why = "the acknowledgement is larger than 1 MiB";
                return -1;
            }
            if (ev == CG_MLLP_FRAME)
                return 0; /* one request, one answer: nothing follows it */
        }
    }
}

/* Field n of segment seg of an HL7 message (raw), split on the message's MSH-1. */
static size_t hl7_field(const char *m, size_t len, const char *seg, int n, const char **out)
{
    *out = "";
    if (len < 8 || memcmp(m, "MSH", 3))
        return 0;
    char fs = m[3];
    const char *end = m + len;
    for (const char *s = m; s < end;) {
        const char *e = s;
        while (e < end && *e != '\r' && *e != '\n')
            e++;
        if (e - s >= 3 && !memcmp(s, seg, 3)) {
            const char *p = s + 3;
            int f = !strcmp(seg, "MSH") ? 1 : 0;
            while (p < e && f < n) {
                if (*p++ == fs)
                    f++;
            }
            if (f != n)
                return 0;
            const char *q = p;
            while (q < e && *q != fs)
                q++;
            *out = p;
            return (size_t)(q - p);
        }
        s = e;
        while (s < end && (*s == '\r' || *s == '\n'))
            s++;
    }
    return 0;
}

typedef struct send_stats {
    unsigned sent, accepted, errors, rejected, failed, mismatched;
} send_stats_t;

/* Sends one message and reads its ACK; prints a line. -1 when the connection is lost. */
static int send_one(send_conn_t *c, const char *name, const char *msg, size_t len, int quiet,
                    send_stats_t *st)
{
    const char *id;
    size_t id_len = hl7_field(msg, len, "MSH", 10, &id);
    static const char sb = CG_MLLP_SB, eb[2] = {CG_MLLP_EB, CG_MLLP_CR};
    st->sent++;
    const char *why = NULL;
    if (conn_write(c, &sb, 1) || conn_write(c, msg, len) || conn_write(c, eb, 2))
        why = "the connection was lost while sending";
    else
        conn_read_frame(c, &why);
    if (why) {
        st->failed++;
        printf("%s\t%.*s\t-\t%s\n", name, (int)id_len, id, why);
        return -1;
    }
    const char *ack = c->fr.frame.data ? c->fr.frame.data : "";
    size_t ack_len = c->fr.frame.len;
    const char *code, *ref, *text;
    size_t code_len = hl7_field(ack, ack_len, "MSA", 1, &code);
    size_t ref_len = hl7_field(ack, ack_len, "MSA", 2, &ref);
    size_t text_len = hl7_field(ack, ack_len, "MSA", 3, &text);
    int ok = code_len == 2 && (!memcmp(code, "AA", 2) || !memcmp(code, "CA", 2));
    int named = ref_len == id_len && !memcmp(ref, id, id_len);
    if (!named)
        st->mismatched++;
    else if (ok)
        st->accepted++;
    else if (code_len == 2 && code[1] == 'E')
        st->errors++;
    else
        st->rejected++;
    if (!quiet || !ok || !named)
        printf("%s\t%.*s\t%.*s\t%s%.*s\n", name, (int)id_len, id, (int)code_len, code,
               named ? "" : "(the ACK names another message) ", (int)text_len, text);
    return 0;
}

/* A file's messages: its MLLP frames, or the whole file; LF and CRLF become CR unless raw. */
static int send_file(send_conn_t *c, const char *path, int raw, int quiet, send_stats_t *st)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cohortgate send: %s: %s\n", path, strerror(errno));
        st->failed++;
        return 0;
    }
    cg_buf_t b;
    cg_buf_init(&b);
    char chunk[65536];
    size_t r;
    while ((r = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len <= SEND_MAX_FILE)
        cg_buf_append(&b, chunk, r);
    fclose(f);
    if (b.len > SEND_MAX_FILE) {
        fprintf(stderr, "cohortgate send: %s: larger than 64 MiB\n", path);
        cg_buf_free(&b);
        st->failed++;
        return 0;
    }
    if (!raw) {
        size_t o = 0;
        for (size_t i = 0; i < b.len; i++) {
            char ch = b.data[i];
            if (ch == '\r' && i + 1 < b.len && b.data[i + 1] == '\n')
                continue;
            b.data[o++] = ch == '\n' ? '\r' : ch;
        }
        b.len = o;
    }
    int rc = 0;
    if (b.len && b.data[0] == CG_MLLP_SB) {
        cg_mllp_framer_t fr;
        cg_mllp_framer_init(&fr, SEND_MAX_FILE);
        size_t off = 0;
        int k = 0;
        while (off < b.len && rc == 0) {
            size_t used = 0;
            cg_mllp_event_t ev = cg_mllp_framer_feed(&fr, b.data + off, b.len - off, &used);
            off += used;
            if (ev == CG_MLLP_FRAME) {
                char name[4200];
                snprintf(name, sizeof(name), "%s#%d", path, ++k);
                rc = send_one(c, name, fr.frame.data ? fr.frame.data : "", fr.frame.len, quiet, st);
            }
        }
        cg_mllp_framer_free(&fr);
    } else if (b.len) {
        rc = send_one(c, path, b.data, b.len, quiet, st);
    }
    cg_buf_free(&b);
    return rc;
}

int cg_cli_send(int argc, char **argv)
{
    enum { OPT_TIMEOUT = 256, OPT_CA, OPT_CERT, OPT_RAW };
    static const struct option opts[] = {
        {"to", required_argument, NULL, 't'},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"tls-ca", required_argument, NULL, OPT_CA},
        {"tls-cert", required_argument, NULL, OPT_CERT},
        {"raw", no_argument, NULL, OPT_RAW},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *to = "127.0.0.1:2575", *ca = NULL, *cert = NULL;
    int timeout_ms = 30000, raw = 0, quiet = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:qh", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            to = optarg;
            break;
        case OPT_TIMEOUT:
            if (cg_cli_parse_ms("send", "--timeout", optarg, &timeout_ms))
                return CG_EXIT_USAGE;
            break;
        case OPT_CA:
            ca = optarg;
            break;
        case OPT_CERT:
            cert = optarg;
            break;
        case OPT_RAW:
            raw = 1;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return CG_EXIT_OK;
        default:
            usage(stderr);
            return CG_EXIT_USAGE;
        }
    }
    if (optind == argc) {
        fprintf(stderr, "cohortgate send: no files to send\n\n");
        usage(stderr);
        return CG_EXIT_USAGE;
    }
    send_conn_t conn = {.fd = -1, .timeout_ms = timeout_ms};
    cg_mllp_framer_init(&conn.fr, 1u << 20);
    char errstr[512];
    if (conn_open(&conn, to, ca, cert, errstr, sizeof(errstr))) {
        fprintf(stderr, "cohortgate send: %s\n", errstr);
        conn_close(&conn);
        return CG_EXIT_FAILURE;
    }
    send_stats_t st = {0};
    int64_t t0 = now_ms();
    for (int i = optind; i < argc; i++)
        if (send_file(&conn, argv[i], raw, quiet, &st))
            break; /* the connection is gone: what is left was not sent */
    conn_close(&conn);
    fflush(stdout); /* the lines before the summary, when both go to one place */
    fprintf(stderr,
            "cohortgate send: %u message(s) to %s in %.2f s: %u accepted, %u stored with an "
            "error (AE/CE), %u rejected, %u not acknowledged, %u answered for another message\n",
            st.sent, to, (double)(now_ms() - t0) / 1000.0, st.accepted, st.errors, st.rejected,
            st.failed, st.mismatched);
    return st.accepted == st.sent ? CG_EXIT_OK : CG_EXIT_FAILURE;
}
