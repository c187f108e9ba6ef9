/* http.c - the metrics endpoint: /metrics and /healthz over HTTP/1.1, served by libmicrohttpd
 * (see cg_metrics.h).
 *
 * We bind the socket ourselves and hand it to MHD: metrics.listen keeps its own parsing and
 * its bind errors ("Address already in use") stay readable. MHD then runs one internal polling
 * thread (epoll on Linux) that serves every connection side by side, so a few clients that
 * send half a request and wait cannot hold off Prometheus or a liveness probe, as they could
 * when connections were served one at a time. The access handler therefore always runs on that
 * one thread, which is what lets it reuse one render buffer.
 */
#include "cg_metrics.h"

#include "cg_log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Room MHD needs in a connection's memory pool beside the request head: the parsed header
 * records and the response's own head. A complete head is checked against max_request exactly
 * (on_request); the pool stops an unfinished one soon after it passes max_request, with 431 (or
 * 414 while the request line is still unfinished) instead of waiting for the rest. */
#define CG_HTTP_POOL_SLACK 2048

struct cg_metrics_server {
    struct MHD_Daemon *daemon;
    int port;
    char address[80];
    cg_metrics_t *metrics;
    cg_metrics_health_fn *health;
    void *opaque;
    cg_metrics_server_opts_t opts;
    cg_buf_t body; /* reused per scrape: only MHD's one polling thread touches it */
};

int cg_metrics_listen_off(const char *listen)
{
    return !listen || !*listen || !strcmp(listen, "off");
}

int cg_metrics_listen_parse(const char *listen, char *host, size_t host_size, char *port,
                            size_t port_size, char *errstr, size_t errstr_size)
{
    const char *h = listen, *h_end, *p;
    if (listen[0] == '[') { /* [IPv6]:PORT */
        h = listen + 1;
        h_end = strchr(h, ']');
        if (!h_end || h_end[1] != ':') {
            snprintf(errstr, errstr_size, "'%s' is not [IPV6]:PORT", listen);
            return -1;
        }
        p = h_end + 2;
    } else {
        h_end = strrchr(listen, ':');
        if (!h_end) {
            snprintf(errstr, errstr_size, "'%s' is not HOST:PORT (for example 127.0.0.1:9464)",
                     listen);
            return -1;
        }
        if (memchr(listen, ':', (size_t)(h_end - listen))) {
            snprintf(errstr, errstr_size, "'%s': an IPv6 address goes in brackets ([::1]:9464)",
                     listen);
            return -1;
        }
        p = h_end + 1;
    }
    size_t hl = (size_t)(h_end - h), pl = strlen(p);
    long pv = 0;
    for (size_t i = 0; i < pl && pv <= 65535; i++)
        pv = p[i] >= '0' && p[i] <= '9' ? pv * 10 + (p[i] - '0') : 65536;
    if (hl == 0 || hl >= host_size) {
        snprintf(errstr, errstr_size,
                 "'%s' names no host (127.0.0.1 for this machine only, 0.0.0.0 for every "
                 "interface)",
                 listen);
        return -1;
    }
    if (pl == 0 || pl > 5 || pv > 65535 || pl >= port_size) {
        snprintf(errstr, errstr_size, "'%s': the port must be a number from 0 to 65535", listen);
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    memcpy(port, p, pl + 1);
    return 0;
}

/* Queues one response that closes its connection (a scrape every few seconds gains nothing
 * from keep-alive, and an idle kept connection would only hold a slot). MHD leaves the body
 * out for HEAD but keeps its Content-Length. */
static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, const char *ctype,
                               const char *body, size_t len)
{
    /* copied: the render buffer is reused by the next scrape while this one is still sending */
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO; /* out of memory: MHD closes the connection */
    enum MHD_Result ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (ok == MHD_YES)
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (ok == MHD_YES)
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    if (ok == MHD_YES && status == MHD_HTTP_METHOD_NOT_ALLOWED)
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    if (ok == MHD_YES)
        ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r); /* MHD holds its own reference until it is sent */
    return ok;
}

static enum MHD_Result respond_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    return respond(c, status, "text/plain; charset=utf-8", text, strlen(text));
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req)
{
    (void)version;
    (void)upload_data;
    (void)req;
    cg_metrics_server_t *s = cls;
    /* Answered on the first call, right after the head: a body (only a refused method has one)
     * is never read; the response closes the connection instead. */
    *upload_data_size = 0;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    /* MHD's memory limit is coarse (it holds more than the head): this is the exact cap */
    if (ci && ci->header_size > s->opts.max_request)
        return respond_text(c, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE,
                            "request head too large\n");
    if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
        return respond_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    /* MHD has already cut the query string off url */
    if (!strcmp(url, "/metrics")) {
        cg_buf_reset(&s->body);
        if (cg_metrics_render(s->metrics, &s->body) != CG_OK)
            return respond_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        return respond(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", s->body.data,
                       s->body.len);
    }
    if (!strcmp(url, "/healthz")) {
        char reason[300] = "ok";
        int status = s->health ? s->health(s->opaque, reason, sizeof(reason) - 1) : 200;
        strcat(reason, "\n");
        return respond_text(c, (unsigned)status, reason);
    }
    return respond_text(c, MHD_HTTP_NOT_FOUND, "not found: try /metrics or /healthz\n");
}

/* MHD's own messages (a client that broke the protocol, the connection limit reached) are
 * about clients, not the gateway: debug level, in our JSON log lines. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (cg_log_get_level() > CG_LOG_DEBUG)
        return;
    char text[512];
    vsnprintf(text, sizeof(text), fmt, ap);
    text[strcspn(text, "\r\n")] = '\0';
    cg_log(CG_LOG_DEBUG, "metrics.http", "%s", text);
}

/* A listening socket on host:port, its port and "HOST:PORT" in s; -1 with the reason. */
static int bind_listen(cg_metrics_server_t *s, const char *addr, const char *host, const char *port,
                       char *errstr, size_t errstr_size)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai) {
        snprintf(errstr, errstr_size, "%s: %s", addr, gai_strerror(gai));
        return -1;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 64)) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(errstr, errstr_size, "%s: %s", addr, strerror(err));
        return -1;
    }
    struct sockaddr_storage sa;
    socklen_t sl = sizeof(sa);
    char ip[INET6_ADDRSTRLEN] = "?";
    if (getsockname(fd, (struct sockaddr *)&sa, &sl) == 0) {
        if (sa.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&sa;
            inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
            s->port = ntohs(a->sin6_port);
            snprintf(s->address, sizeof(s->address), "[%s]:%d", ip, s->port);
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&sa;
            inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
            s->port = ntohs(a->sin_port);
            snprintf(s->address, sizeof(s->address), "%s:%d", ip, s->port);
        }
    }
    return fd;
}

cg_metrics_server_t *cg_metrics_server_start(const char *addr, cg_metrics_t *m,
                                             cg_metrics_health_fn *health, void *opaque,
                                             const cg_metrics_server_opts_t *opts, char *errstr,
                                             size_t errstr_size)
{
    char host[256], port[8];
    if (cg_metrics_listen_off(addr)) {
        snprintf(errstr, errstr_size, "metrics.addr is off");
        return NULL;
    }
    if (cg_metrics_listen_parse(addr, host, sizeof(host), port, sizeof(port), errstr, errstr_size))
        return NULL;
    cg_metrics_server_t *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    s->metrics = m;
    s->health = health;
    s->opaque = opaque;
    if (opts)
        s->opts = *opts;
    if (s->opts.read_timeout_ms <= 0)
        s->opts.read_timeout_ms = 5000;
    if (s->opts.max_request < 64)
        s->opts.max_request = 8192;
    if (s->opts.max_connections <= 0)
        s->opts.max_connections = 64;
    cg_buf_init(&s->body);
    int fd = bind_listen(s, addr, host, port, errstr, errstr_size);
    if (fd < 0) {
        free(s);
        return NULL;
    }
    /* MHD gets a copy: it closes the socket it was given on stop, and on some failure paths
     * but not others, so ours is closed here either way and never twice */
    int mhd_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    int err = errno;
    close(fd);
    if (mhd_fd < 0) {
        snprintf(errstr, errstr_size, "%s: %s", addr, strerror(err));
        free(s);
        return NULL;
    }
    /* signals (SIGTERM, SIGHUP) belong to the main thread: MHD's thread inherits a full mask */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    s->daemon = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                                 on_request, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
                                 MHD_OPTION_LISTEN_SOCKET, mhd_fd, MHD_OPTION_CONNECTION_LIMIT,
                                 (unsigned)s->opts.max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
                                 (unsigned)((s->opts.read_timeout_ms + 999) / 1000),
                                 MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                 s->opts.max_request + CG_HTTP_POOL_SLACK, MHD_OPTION_END);
    err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!s->daemon) {
        snprintf(errstr, errstr_size, "%s: cannot start the HTTP server: %s", addr, strerror(err));
        free(s);
        return NULL;
    }
    return s;
}

int cg_metrics_server_port(const cg_metrics_server_t *s)
{
    return s ? s->port : -1;
}

const char *cg_metrics_server_address(const cg_metrics_server_t *s)
{
    return s ? s->address : "";
}

void cg_metrics_server_stop(cg_metrics_server_t *s)
{
    if (!s)
        return;
    MHD_stop_daemon(s->daemon); /* wakes and joins its thread, closes connections and socket */
    cg_buf_free(&s->body);
    free(s);
}
