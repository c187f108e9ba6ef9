/* cg_mllp_load.c - MLLP load generator for tests/bench/bench_mllp.sh: CONNECTIONS connections to
 * an MLLP listener, each sending one HL7 v2 ORU^R01 and waiting for its ACK before it sends the
 * next, as interface engines do. One thread, epoll.
 *
 *   flat out (--rate 0)  every connection sends its next message as soon as its ACK is in
 *   --rate R             R messages/s in all, scheduled every 1/R s (a timerfd); each goes out on
 *                        an idle connection; when none is idle it waits, and its latency counts
 *                        from its scheduled time (no coordinated omission)
 *
 * Every message has its own MSH-10 (TAG-CONN-SEQ: a listener's resend cache answers nothing
 * from memory) and one of 1,000 patients in PID-3. Every ACK must be AA or CA with MSA-2 = its
 * message's MSH-10, or it counts as an error. Messages whose ACK comes in the first WARMUP
 * seconds are left out of the figures. At the end of DURATION no message is sent any more and
 * the outstanding ACKs are awaited (5 s at most).
 *
 * usage: cg_mllp_load --port P [--host 127.0.0.1] [--connections 50] [--duration 10]
 *                     [--warmup 2] [--rate 0] [--tag X]
 * prints one line: acked=N errors=N seconds=S msgs_per_s=R p50_ms= p99_ms= max_ms= late=N unacked=N
 * (late: messages sent more than 1 ms after their scheduled time for want of an idle connection;
 * unacked: ACKs still outstanding 5 s after the end, left out) and exits 0, or 1 when a
 * connection was closed or an ACK was wrong. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024

typedef struct conn {
    int fd;
    int busy;         /* a message awaits its ACK */
    uint64_t seq;     /* messages sent on it */
    int64_t sched_ns; /* when the message in flight was due (its latency counts from there) */
    char ctrl[48];    /* its MSH-10 */
    char buf[8192];   /* what came back so far */
    size_t len;
} conn_t;

static conn_t conns[MAX_CONNS];
static int n_conns = 50;
static const char *tag = "L";
static uint32_t *lat_us;
static size_t n_lat, cap_lat;
static uint64_t acked_measured, errors, late, unacked;
static int64_t measure_from_ns, measure_to_ns;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* An ORU^R01 of about 900 bytes, as a lab sends them. */
static size_t make_msg(conn_t *c, int idx, char *out, size_t size)
{
    unsigned p = (unsigned)((c->seq * 7919u + (unsigned)idx * 104729u) % 1000u);
    snprintf(c->ctrl, sizeof(c->ctrl), "%s-%d-%llu", tag, idx, (unsigned long long)c->seq);
    int n = snprintf(
        out, size,
        "\x0bMSH|^~\\&|LIS|NORTH LAB^2.16.840.1.113883.3.7^ISO|COHORTGATE|HOSP^2.16.840.1.1^ISO|"
        "20240314101500||ORU^R01^ORU_R01|%s|P|2.5.1\r"
        "PID|1||MRN%06u^^^HOSP^MR||DOE^JANE^Q||19700101|F|||12 MAIN ST^^SPRINGFIELD^IL^62701"
        "||555-0100\r"
        "PV1|1|O|LAB^^^HOSP||||1234^WELBY^MARCUS\r"
        "ORC|RE|ORD%06u|FIL%06u||CM\r"
        "OBR|1|ORD%06u|FIL%06u|24323-8^Comprehensive metabolic panel^LN|||20240314093000"
        "|||||||||1234^WELBY^MARCUS||||||20240314101400|||F\r"
        "OBX|1|NM|2345-7^Glucose^LN||%u|mg/dL|70-99|%s|||F|||20240314093000\r"
        "OBX|2|NM|2160-0^Creatinine^LN||0.%u|mg/dL|0.6-1.2|N|||F|||20240314093000\r"
        "OBX|3|NM|2951-2^Sodium^LN||13%u|mmol/L|135-145|N|||F|||20240314093000\r"
        "OBX|4|NM|2823-3^Potassium^LN||4.%u|mmol/L|3.5-5.1|N|||F|||20240314093000\r"
        "OBX|5|NM|4548-4^Hemoglobin A1c^LN||%u.%u|%%|4.0-5.6|H|||F|||20240314093000\r"
        "\x1c\r",
        c->ctrl, p, p, p, p, p, 70 + p % 60, p % 60 > 29 ? "H" : "N", 6 + p % 6, 5 + p % 5, p % 10,
        5 + p % 4, p % 10);
    return (size_t)n;
}

static int cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void send_next(int idx, int64_t sched_ns)
{
    conn_t *c = &conns[idx];
    char msg[2048];
    size_t len = make_msg(c, idx, msg, sizeof(msg));
    c->seq++;
    c->busy = 1;
    c->sched_ns = sched_ns;
    size_t off = 0;
    while (off < len) { /* a message fits the socket buffer; a short write is only waited out */
        ssize_t w = send(c->fd, msg + off, len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN)
            continue;
        if (w <= 0)
            die("send");
        off += (size_t)w;
    }
}

static void record(int64_t sched_ns, int64_t done_ns)
{
    if (done_ns < measure_from_ns || done_ns > measure_to_ns)
        return;
    acked_measured++;
    if (n_lat == cap_lat) {
        cap_lat = cap_lat ? cap_lat * 2 : 1 << 16;
        lat_us = realloc(lat_us, cap_lat * sizeof(*lat_us));
        if (!lat_us)
            die("realloc");
    }
    int64_t us = (done_ns - sched_ns) / 1000;
    lat_us[n_lat++] = (uint32_t)(us < 0 ? 0 : us);
}

/* Reads what came on connection idx; 1 when its ACK is complete (and checked). */
static int on_readable(int idx)
{
    conn_t *c = &conns[idx];
    for (;;) {
        ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (r <= 0) {
            fprintf(stderr, "cg_mllp_load: connection %d closed by the listener\n", idx);
            exit(1);
        }
        c->len += (size_t)r;
        c->buf[c->len] = '\0';
        char *end = memchr(c->buf, 0x1c, c->len);
        if (!end)
            continue;
        *end = '\0';
        char want[64];
        snprintf(want, sizeof(want), "|%s", c->ctrl);
        char *msa = strstr(c->buf, "\rMSA|");
        if (!msa || (strncmp(msa + 5, "AA|", 3) && strncmp(msa + 5, "CA|", 3)) ||
            strncmp(msa + 7, want, strlen(want))) {
            if (errors++ < 5)
                fprintf(stderr, "cg_mllp_load: ACK for %s: %s\n", c->ctrl, msa ? msa + 1 : c->buf);
        }
        c->len = 0; /* one message in flight per connection: nothing follows the ACK */
        c->busy = 0;
        return 1;
    }
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0;
    double duration = 10, warmup = 2, rate = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--host"))
            host = argv[i + 1];
        else if (!strcmp(argv[i], "--connections"))
            n_conns = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--duration"))
            duration = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup"))
            warmup = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--rate"))
            rate = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--tag"))
            tag = argv[i + 1];
        else {
            fprintf(stderr, "cg_mllp_load: unknown option %s (see the source's header)\n", argv[i]);
            return 2;
        }
    }
    if (!port || n_conns < 1 || n_conns > MAX_CONNS || duration <= warmup) {
        fprintf(stderr, "usage: cg_mllp_load --port P [--connections N] [--duration S] "
                        "[--warmup S] [--rate R] [--tag X]\n");
        return 2;
    }
    int ep = epoll_create1(0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
        die("inet_pton");
    for (int i = 0; i < n_conns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)))
            die("connect");
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        conns[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    int tfd = -1;
    int64_t interval_ns = rate > 0 ? (int64_t)(1e9 / rate) : 0;
    if (rate > 0) {
        tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
        epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    }
    int64_t t0 = now_ns();
    measure_from_ns = t0 + (int64_t)(warmup * 1e9);
    int64_t stop_ns = t0 + (int64_t)(duration * 1e9);
    measure_to_ns = stop_ns;
    int64_t next_ns = t0; /* the next scheduled message (rate mode) */
    uint64_t due = 0;     /* scheduled messages not sent yet for want of an idle connection */
    int64_t due_ns[4096];
    int busy = 0;
    if (rate <= 0) {
        for (int i = 0; i < n_conns; i++)
            send_next(i, now_ns());
        busy = n_conns;
    }
    struct epoll_event evs[256];
    int64_t drain_until = stop_ns + 5000000000LL;
    for (;;) {
        int64_t now = now_ns();
        if (now >= stop_ns && busy == 0)
            break;
        if (now >= drain_until) {
            fprintf(stderr, "cg_mllp_load: %d ACK(s) still outstanding 5 s after the end\n", busy);
            unacked = (uint64_t)busy;
            break;
        }
        if (rate > 0 && now < stop_ns) {
            /* everything due by now, then arm the timer for the next one */
            while (next_ns <= now && next_ns < stop_ns) {
                if (due < sizeof(due_ns) / sizeof(due_ns[0]))
                    due_ns[due++] = next_ns;
                next_ns += interval_ns;
            }
            for (int i = 0; i < n_conns && due > 0; i++) {
                if (conns[i].busy)
                    continue;
                int64_t s = due_ns[0];
                memmove(due_ns, due_ns + 1, (size_t)(due - 1) * sizeof(due_ns[0]));
                due--;
                if (now - s > 1000000)
                    late++;
                send_next(i, s);
                busy++;
            }
            struct itimerspec its = {
                .it_value = {.tv_sec = next_ns / 1000000000, .tv_nsec = next_ns % 1000000000}};
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        }
        int n = epoll_wait(ep, evs, 256, 100);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int k = 0; k < n; k++) {
            uint32_t idx = evs[k].data.u32;
            if (idx == UINT32_MAX) {
                uint64_t x;
                ssize_t r = read(tfd, &x, sizeof(x));
                (void)r;
                continue;
            }
            if (!on_readable((int)idx))
                continue;
            int64_t done = now_ns();
            record(conns[idx].sched_ns, done);
            busy--;
            if (rate <= 0 && done < stop_ns) {
                send_next((int)idx, done);
                busy++;
            }
        }
    }
    double secs = (double)(measure_to_ns - measure_from_ns) / 1e9;
    qsort(lat_us, n_lat, sizeof(*lat_us), cmp_u32);
    double p50 = n_lat ? lat_us[n_lat / 2] / 1000.0 : 0;
    double p99 = n_lat ? lat_us[(size_t)((double)(n_lat - 1) * 0.99)] / 1000.0 : 0;
    double mx = n_lat ? lat_us[n_lat - 1] / 1000.0 : 0;
    printf("acked=%llu errors=%llu seconds=%.2f msgs_per_s=%.0f p50_ms=%.2f p99_ms=%.2f "
           "max_ms=%.2f late=%llu unacked=%llu\n",
           (unsigned long long)acked_measured, (unsigned long long)errors, secs,
           (double)acked_measured / secs, p50, p99, mx, (unsigned long long)late,
           (unsigned long long)unacked);
    for (int i = 0; i < n_conns; i++)
        close(conns[i].fd);
    return errors ? 1 : 0;
}
