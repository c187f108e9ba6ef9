/* test_mllp_crash.c - `cohortgate listen` (the binary) killed with SIGKILL at random moments
 * while MLLP clients send, and resend what was not acknowledged, as interface engines do:
 * every acknowledged message is on the raw topic, byte for byte (at least once). Then SIGTERM:
 * the listener exits within its drain bound. Duplicates (a message stored, its ACK lost with the
 * process, resent after the restart) are counted and reported, not failed: the resend cache is
 * in memory. Exits 77 (skipped) without a broker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kafka_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_MSGS  300
#define N_CONNS 3
#define N_KILLS 6

static char dir[64], config_path[128], log_path[128], topic[128];
static int port;
static volatile pid_t listener_pid;
static volatile int killing = 1;
static pthread_mutex_t pid_lock = PTHREAD_MUTEX_INITIALIZER;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

static pid_t start_listener(void)
{
    char *argv[] = {CG_GATEWAY_BIN, "listen", "-c", config_path, NULL};
    return tk_spawn(argv, log_path, NULL);
}

static size_t make_msg(int i, char *buf, size_t n)
{
    return (size_t)snprintf(buf, n,
                            "MSH|^~\\&|LIS|LAB|CG|CG|20240314101500||ORU^R01|KILL%05d|P|2.5\r"
                            "PID|1||P%04d^^^HOSP^MR||DOE^JANE||19700101|F\r"
                            "OBR|1|ORD%05d||4548-4^HbA1c^LN\r"
                            "OBX|1|NM|4548-4^HbA1c^LN||%d.%d|%%|||||F\r",
                            i, i % 97, i, 5 + i % 4, i % 10);
}

static int kills, restarts; /* under pid_lock */

/* Kills the listener with SIGKILL every 0.1-0.5 s, N_KILLS times, each once the previous one
 * was restarted. The main thread restarts it: a child dies with the thread that spawned it
 * (tk_spawn's parent-death signal), so this thread must start none. */
static void *killer(void *arg)
{
    (void)arg;
    unsigned seed = 42;
    for (int k = 0; k < N_KILLS && killing;) {
        usleep((useconds_t)(100000 + rand_r(&seed) % 400000));
        pthread_mutex_lock(&pid_lock);
        if (kills == restarts) {
            kill(listener_pid, SIGKILL);
            kills++;
            k++;
        }
        pthread_mutex_unlock(&pid_lock);
    }
    return NULL;
}

typedef struct conn {
    int fd;
} conn_t;

static int conn_ensure(conn_t *c)
{
    if (c->fd >= 0)
        return 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
        close(fd);
        return -1;
    }
    c->fd = fd;
    return 0;
}

static void conn_drop(conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* Sends message i on c and waits for its ACK: 1 when acknowledged AA naming it, 0 otherwise
 * (the connection is dropped: the message is resent later, as a sender would). */
static int send_one(conn_t *c, int i)
{
    char msg[1024], frame[1100], ack[2048], want[32];
    size_t len = make_msg(i, msg, sizeof(msg));
    int n = snprintf(frame, sizeof(frame), "\x0b%.*s\x1c\r", (int)len, msg);
    if (send(c->fd, frame, (size_t)n, MSG_NOSIGNAL) != n) {
        conn_drop(c);
        return 0;
    }
    size_t got = 0;
    int64_t until = tk_now_ms() + 5000;
    for (;;) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int left = (int)(until - tk_now_ms());
        if (left <= 0 || poll(&p, 1, left) <= 0)
            break;
        ssize_t r = recv(c->fd, ack + got, sizeof(ack) - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
        ack[got] = '\0';
        if (memchr(ack, 0x1c, got)) {
            snprintf(want, sizeof(want), "MSA|AA|KILL%05d", i);
            if (strstr(ack, want))
                return 1;
            break;
        }
    }
    conn_drop(c);
    return 0;
}

static void test_kill9_loses_no_acknowledged_message(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/cg-mllp-crash-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(config_path, sizeof(config_path), "%s/listen.json", dir);
    snprintf(log_path, sizeof(log_path), "%s/listen.log", dir);
    tk_unique_name(topic, sizeof(topic), "cg-mllp-crash");
    assert_int_equal(tk_create_topic(topic, 3), 0);
    port = free_port();
    FILE *f = fopen(config_path, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"source\":\"mllp\",\"listen\":{\"address\":\"127.0.0.1:%d\",\"topic\":\"%s\"},"
            "\"pseudonym\":{\"key_file\":\"" CG_SOURCE_DIR "/tests/golden/key\"},"
            "\"kafka\":{\"bootstrap.servers\":\"%s\",\"linger.ms\":1},"
            "\"delivery\":{\"drain_timeout_ms\":5000},\"log\":{\"level\":\"warn\"}}",
            port, topic, tk_bootstrap());
    fclose(f);
    listener_pid = start_listener();
    assert_true(listener_pid > 0);

    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, killer, NULL), 0);
    static int acked[N_MSGS];
    conn_t conns[N_CONNS];
    for (int k = 0; k < N_CONNS; k++)
        conns[k].fd = -1;
    int n_acked = 0, sends = 0;
    int64_t until = tk_now_ms() + 300000; /* generous: a loaded machine restarts slowly */
    while (n_acked < N_MSGS && tk_now_ms() < until) {
        int waiting = 0;
        for (int i = 0; i < N_MSGS; i++) { /* each pass resends what is not acknowledged */
            if (acked[i])
                continue;
            /* the second half waits for the first kill: a fast machine acknowledged all of
             * them before it, and a kill with messages still to send cuts some off their ACK */
            if (i >= N_MSGS / 2) {
                pthread_mutex_lock(&pid_lock);
                int none_yet = kills == 0;
                pthread_mutex_unlock(&pid_lock);
                if (none_yet) {
                    waiting = 1;
                    continue;
                }
            }
            conn_t *c = &conns[i % N_CONNS];
            if (conn_ensure(c)) {
                pthread_mutex_lock(&pid_lock); /* killed (restart it), or dead on its own? */
                int st, died = tk_wait_pid(listener_pid, 0, &st) == 0, by_itself = 0;
                if (died && restarts < kills) {
                    restarts++;
                    listener_pid = start_listener();
                } else if (died) {
                    by_itself = 1;
                }
                pthread_mutex_unlock(&pid_lock);
                if (by_itself) {
                    char cmd[256];
                    snprintf(cmd, sizeof(cmd), "tail -20 %s", log_path);
                    if (system(cmd) != 0)
                        fprintf(stderr, "(no listener log at %s)\n", log_path);
                    fail_msg("the listener exited by itself (status %d)", st);
                }
                usleep(20000);
                continue;
            }
            sends++;
            if (send_one(c, i)) {
                acked[i] = 1;
                n_acked++;
            }
        }
        if (waiting)
            usleep(1000);
    }
    killing = 0;
    pthread_join(th, NULL);
    pthread_mutex_lock(&pid_lock); /* a last kill the loop did not see: restart for SIGTERM */
    int st0;
    if (restarts < kills && tk_wait_pid(listener_pid, 10000, &st0) == 0) {
        restarts++;
        listener_pid = start_listener();
    }
    pthread_mutex_unlock(&pid_lock);
    for (int i = 0; i < 500; i++) { /* listening (its signal handlers set) before SIGTERM */
        conn_t probe = {.fd = -1};
        if (!conn_ensure(&probe)) {
            conn_drop(&probe);
            break;
        }
        usleep(20000);
    }
    assert_true(kills >= 1);
    for (int k = 0; k < N_CONNS; k++)
        conn_drop(&conns[k]);
    assert_int_equal(n_acked, N_MSGS);
    assert_true(sends > N_MSGS); /* the kills did cut some messages off their ACK */

    /* SIGTERM: stops within drain_timeout_ms + a few seconds, exit 0 */
    int64_t t0 = tk_now_ms();
    kill(listener_pid, SIGTERM);
    int st = 0;
    assert_int_equal(tk_wait_pid(listener_pid, 15000, &st), 0);
    int64_t stop_ms = tk_now_ms() - t0;
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    tk_msg_t *msgs = NULL;
    size_t n = tk_read_all(topic, &msgs);
    static int seen[N_MSGS];
    size_t dup = 0;
    for (size_t k = 0; k < n; k++) {
        int i;
        const char *p = memmem(msgs[k].value, msgs[k].value_len, "|KILL", 5);
        assert_non_null(p);
        assert_int_equal(sscanf(p, "|KILL%05d", &i), 1);
        assert_true(i >= 0 && i < N_MSGS);
        char want[1024];
        size_t wl = make_msg(i, want, sizeof(want));
        assert_int_equal(msgs[k].value_len, wl); /* byte for byte */
        assert_memory_equal(msgs[k].value, want, wl);
        if (seen[i]++)
            dup++;
    }
    for (int i = 0; i < N_MSGS; i++)
        if (!seen[i])
            fail_msg("KILL%05d was acknowledged but is not on the raw topic", i);
    printf("# %d messages, %d sends, %d kills: all %d acknowledged messages on the topic; "
           "%zu duplicate(s) from resends after a kill; SIGTERM exit in %lld ms\n",
           N_MSGS, sends, kills, N_MSGS, dup, (long long)stop_ms);
    tk_msgs_free(msgs, n);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    if (!getenv("COHORTGATE_TEST_BOOTSTRAP")) {
        fprintf(stderr, "skipped: COHORTGATE_TEST_BOOTSTRAP is not set\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill9_loses_no_acknowledged_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
