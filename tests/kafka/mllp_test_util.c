/* mllp_test_util.c - the in-process listener and MLLP client of mllp_test_util.h. */
#include "mllp_test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "kafka_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int64_t mt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *listener_main(void *arg)
{
    mt_listener_t *l = arg;
    char errstr[512];
    l->rc = cg_gateway_run(l->gw, errstr, sizeof(errstr));
    if (l->rc)
        fprintf(stderr, "listen: %s\n", errstr);
    return NULL;
}

int mt_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

int mt_connect(int port)
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

/* Starts a listener on a free port writing to a fresh topic; extra_listen and kafka are JSON
 * members added to "listen" and "kafka". */
void mt_listener_start(mt_listener_t *l, const char *bootstrap, const char *extra_listen,
                       const char *extra_kafka)
{
    memset(l, 0, sizeof(*l));
    l->port = mt_free_port();
    tk_unique_name(l->topic, sizeof(l->topic), "cg-mllp-raw");
    if (!strcmp(bootstrap, tk_bootstrap()))
        assert_int_equal(tk_create_topic(l->topic, 3), 0);
    char text[2048];
    snprintf(text, sizeof(text),
             "{\"source\":\"mllp\",\"listen\":{\"address\":\"127.0.0.1:%d\",\"topic\":\"%s\","
             "\"max_frame_bytes\":%d,\"read_timeout_ms\":%d,\"idle_timeout_ms\":%d%s},"
             "\"pseudonym\":{\"key_file\":\"" CG_SOURCE_DIR "/tests/golden/key\"},"
             "\"metrics\":{\"listen\":\"127.0.0.1:0\"},\"log\":{\"level\":\"warn\"},"
             "\"delivery\":{\"drain_timeout_ms\":5000},"
             "\"kafka\":{\"bootstrap.servers\":\"%s\"%s}}",
             l->port, l->topic, MT_FRAME_LIMIT, MT_READ_TIMEOUT, MT_IDLE_TIMEOUT, extra_listen,
             bootstrap, extra_kafka);
    cg_error_t err;
    l->cfg = cg_config_load_string(text, "<test>", NULL, &err);
    if (!l->cfg)
        fprintf(stderr, "config: %s\n", err.text);
    assert_non_null(l->cfg);
    char errstr[512];
    cg_gateway_opts_t o = {.passthrough = 1};
    l->gw = cg_gateway_new(l->cfg, &o, errstr, sizeof(errstr));
    if (!l->gw)
        fprintf(stderr, "new: %s\n", errstr);
    assert_non_null(l->gw);
    assert_int_equal(pthread_create(&l->th, NULL, listener_main, l), 0);
    for (int i = 0; i < 500; i++) { /* until it accepts */
        int fd = mt_connect(l->port);
        if (fd >= 0) {
            close(fd);
            return;
        }
        usleep(10000);
    }
    fail_msg("the listener did not start");
}

void mt_listener_stop(mt_listener_t *l)
{
    cg_gateway_stop(l->gw);
    pthread_join(l->th, NULL);
    cg_gateway_destroy(l->gw);
    cg_config_destroy(l->cfg);
}

int mt_send_frame(int fd, const char *msg, size_t len)
{
    char sb = 0x0b, eb[2] = {0x1c, 0x0d};
    if (send(fd, &sb, 1, MSG_NOSIGNAL) != 1 || send(fd, msg, len, MSG_NOSIGNAL) != (ssize_t)len ||
        send(fd, eb, 2, MSG_NOSIGNAL) != 2)
        return -1;
    return 0;
}

/* Reads one framed ACK into buf (without framing) within timeout_ms; its length, or -1 on a
 * timeout, -2 when the listener closed the connection. */
int mt_read_ack(int fd, char *buf, size_t size, int timeout_ms)
{
    size_t n = 0;
    int64_t until = mt_now_ms() + timeout_ms;
    for (;;) {
        char *eb = n > 1 ? memchr(buf, 0x1c, n) : NULL;
        if (eb && eb + 1 < buf + n) {
            size_t len = (size_t)(eb - buf) - 1; /* after the start byte */
            memmove(buf, buf + 1, len);
            buf[len] = '\0';
            return (int)len;
        }
        int left = (int)(until - mt_now_ms());
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0)
            return -1;
        ssize_t r = recv(fd, buf + n, size - 1 - n, 0);
        if (r <= 0)
            return -2;
        n += (size_t)r;
    }
}

/* Field n (>= 3) of the first segment of an HL7 message, split on its MSH-1 by hand. */
void mt_field_of(const char *msg, size_t len, const char *seg, int n, char *out, size_t size)
{
    out[0] = '\0';
    const char *s = msg, *end = msg + len;
    while (s + 3 < end && memcmp(s, seg, 3)) { /* the segment at a line start */
        while (s < end && *s != '\r' && *s != '\n')
            s++;
        while (s < end && (*s == '\r' || *s == '\n'))
            s++;
    }
    if (s + 4 > end)
        return;
    char fs = s[3];
    const char *p = s + 3;
    int f = !strcmp(seg, "MSH") ? 1 : 0;
    while (f < n && p < end && *p != '\r' && *p != '\n') {
        p++;
        if (p[-1] == fs)
            f++;
    }
    if (f != n)
        return;
    size_t o = 0;
    while (p < end && *p != fs && *p != '\r' && *p != '\n' && o + 1 < size)
        out[o++] = *p++;
    out[o] = '\0';
}

size_t mt_make_adt(char *buf, size_t size, const char *ctrl, const char *name)
{
    return (size_t)snprintf(buf, size,
                            "MSH|^~\\&|APP|FAC|CG|CG|20240101000000||ADT^A08|%s|P|2.5.1\r"
                            "PID|1||P%s^^^HOSP^MR||%s\r",
                            ctrl, ctrl, name);
}

int mt_closed_within(int fd, int ms)
{
    char b[256];
    int64_t until = mt_now_ms() + ms;
    while (mt_now_ms() < until) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) > 0) {
            ssize_t r = recv(fd, b, sizeof(b), 0);
            if (r == 0 || (r < 0 && errno == ECONNRESET))
                return 1;
        }
    }
    return 0;
}

/* Sends one message on fd and returns its MSA-1 in code ("" when no ACK came). */
void mt_send_one(int fd, const char *ctrl, char *code, size_t size)
{
    char msg[512], ack[4096];
    size_t n = mt_make_adt(msg, sizeof(msg), ctrl, "DOE");
    code[0] = '\0';
    if (mt_send_frame(fd, msg, n))
        return;
    int r = mt_read_ack(fd, ack, sizeof(ack), 5000);
    if (r > 0)
        mt_field_of(ack, (size_t)r, "MSA", 1, code, size);
}
