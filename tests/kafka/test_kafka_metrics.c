/* test_kafka_metrics.c - /metrics and /healthz of a gateway running in-process against the real
 * broker: scraped over HTTP while it runs, the counters reconcile with what was produced, with
 * the gateway's own statistics and with what landed on the output topics; the consumer lag
 * comes from librdkafka's statistics and falls to 0 once everything is committed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cg_cli.h"
#include "cg_config.h"
#include "cg_hl7.h"
#include "cg_mapping.h"
#include "cg_gateway.h"
#include "kafka_util.h"

#define N_GOOD 24
#define N_JUNK 6

static char in_topic[128], out_topic[128], dlq_topic[128], group[128];

/* GET path; returns the whole response (malloc'ed) and its status in *status. */
static char *http_get(int port, const char *path, int *status)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {60, 0}; /* a hung endpoint fails the test instead of hanging it */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char req[256];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    for (;;) {
        if (len + 1 >= cap)
            out = realloc(out, cap *= 2);
        ssize_t r = recv(fd, out + len, cap - len - 1, 0);
        if (r <= 0) {
            assert_false(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
            break;
        }
        len += (size_t)r;
    }
    close(fd);
    out[len] = '\0';
    assert_int_equal(strncmp(out, "HTTP/1.1 ", 9), 0);
    *status = atoi(out + 9);
    return out;
}

/* Sum of the samples of lines that start with prefix and contain every needle (NULL-ended);
 * -1 when there is none. */
static double sample_sum(const char *text, const char *prefix, ...)
{
    double sum = -1;
    size_t pl = strlen(prefix);
    for (const char *line = text; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        const char *eol = strchr(line, '\n');
        size_t n = eol ? (size_t)(eol - line) : strlen(line);
        if (n < pl || strncmp(line, prefix, pl))
            continue;
        char buf[1024];
        snprintf(buf, sizeof(buf), "%.*s", (int)n, line);
        va_list ap;
        va_start(ap, prefix);
        int all = 1;
        for (const char *needle; (needle = va_arg(ap, const char *)) != NULL;)
            all &= strstr(buf, needle) != NULL;
        va_end(ap);
        if (all)
            sum = (sum < 0 ? 0 : sum) + strtod(strrchr(buf, ' ') + 1, NULL);
    }
    return sum;
}

typedef struct run_ctx {
    cg_gateway_t *gw;
    cg_err_t rc;
    char err[512];
} run_ctx_t;

static void *run(void *arg)
{
    run_ctx_t *c = arg;
    c->rc = cg_gateway_run(c->gw, c->err, sizeof(c->err));
    return NULL;
}

static void produce_feed(void)
{
    rd_kafka_t *p = tk_producer();
    for (int i = 0; i < N_GOOD + N_JUNK; i++) {
        char msg[512], key[16];
        int len;
        if (i % 5 == 4) /* every fifth is junk: a dead letter */
            len = snprintf(msg, sizeof(msg), "{\"not\":\"hl7\",\"n\":%d}", i);
        else
            len = snprintf(msg, sizeof(msg),
                           "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|M%03d|P|2.5.1\r"
                           "PID|1||%d^^^HOSP^MR\r"
                           "OBX|1|NM|4548-4^HbA1c^LN||7.1|%%|||||F|||20240314\r",
                           i, 700 + i % 9);
        int kl = snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(in_topic), RD_KAFKA_V_KEY(key, kl),
                                           RD_KAFKA_V_VALUE(msg, len),
                                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                           RD_KAFKA_V_END),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    assert_int_equal(rd_kafka_flush(p, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(p);
}

/* eos: exactly-once, whose offsets go in transactions: librdkafka's statistics do not see those
 * commits, so the lag is not waited for. workers > 1 updates the metrics from worker threads. */
static void reconcile(int eos, int workers)
{
    tk_unique_name(in_topic, sizeof(in_topic), "cg-it-metrics-raw");
    tk_unique_name(out_topic, sizeof(out_topic), "cg-it-metrics-out");
    tk_unique_name(dlq_topic, sizeof(dlq_topic), "cg-it-metrics-dlq");
    tk_unique_name(group, sizeof(group), "cg-it-metrics-group");
    assert_int_equal(tk_create_topic(in_topic, 2), 0);
    assert_int_equal(tk_create_topic(out_topic, 1), 0);
    assert_int_equal(tk_create_topic(dlq_topic, 1), 0);
    produce_feed();

    char text[2048];
    snprintf(text, sizeof(text),
             "{\"group_id\":\"%s\",\"inputs\":[{\"topic\":\"%s\"}],"
             "\"output\":{\"topic\":\"%s\",\"dead_letter_topic\":\"%s\"},"
             "\"mapping\":{\"specs\":\"" CG_SOURCE_DIR "/specs\"},"
             "\"pseudonym\":{\"key_file\":\"" CG_SOURCE_DIR "/tests/golden/key\"},"
             "\"delivery\":{\"commit_interval_ms\":100,\"semantics\":\"%s\"},\"workers\":%d,"
             "\"log\":{\"level\":\"warn\"},"
             "\"metrics\":{\"listen\":\"127.0.0.1:0\"},"
             "\"kafka\":{\"bootstrap.servers\":\"%s\",\"statistics.interval.ms\":500}}",
             group, in_topic, out_topic, dlq_topic, eos ? "exactly-once" : "at-least-once", workers,
             tk_bootstrap());
    cg_error_t err;
    cg_config_t *cfg = cg_config_load_string(text, "<test>", NULL, &err);
    if (!cfg)
        fail_msg("%s", err.text);
    run_ctx_t c = {0};
    c.gw = cg_gateway_new(cfg, NULL, c.err, sizeof(c.err));
    if (!c.gw)
        fail_msg("%s", c.err);
    int port = cg_gateway_metrics_port(c.gw);
    assert_true(port > 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, run, &c), 0);

    /* scrape while it runs until every input is counted and the lag of both partitions has
     * fallen to 0 (everything committed, as librdkafka's statistics see it) */
    char in_label[200], out_label[200], p0[300], p1[300];
    snprintf(in_label, sizeof(in_label), "{topic=\"%s\"}", in_topic);
    snprintf(out_label, sizeof(out_label), "topic=\"%s\"", out_topic);
    snprintf(p0, sizeof(p0), "{topic=\"%s\",partition=\"0\"}", in_topic);
    snprintf(p1, sizeof(p1), "{topic=\"%s\",partition=\"1\"}", in_topic);
    int status, done = 0, saw_healthy = 0;
    for (int tries = 0; tries < 240 && !done; tries++) {
        char *m = http_get(port, "/metrics", &status);
        assert_int_equal(status, 200);
        double in = sample_sum(m, "cohortgate_messages_in_total{", in_label, NULL);
        double lag0 = sample_sum(m, "cohortgate_consumer_lag{", p0, NULL);
        double lag1 = sample_sum(m, "cohortgate_consumer_lag{", p1, NULL);
        assert_true(in <= N_GOOD + N_JUNK); /* never more than was produced */
        done = in == N_GOOD + N_JUNK && (eos || (lag0 == 0 && lag1 == 0));
        free(m);
        if (in == N_GOOD + N_JUNK) { /* consuming: partitions are assigned */
            char *h = http_get(port, "/healthz", &status);
            assert_int_equal(status, 200);
            assert_non_null(strstr(h, "\r\n\r\nok\n"));
            saw_healthy = 1;
            free(h);
        }
        if (!done)
            usleep(250000);
    }
    assert_true(saw_healthy);
    if (!done)
        fail_msg("messages_in never reached %d with the consumer lag at 0", N_GOOD + N_JUNK);

    /* stop (drains, commits); the endpoint stays up until destroy, and says so */
    cg_gateway_stop(c.gw);
    pthread_join(th, NULL);
    assert_int_equal(c.rc, CG_OK);
    char *h = http_get(port, "/healthz", &status);
    assert_int_equal(status, 503);
    assert_non_null(strstr(h, "\r\n\r\nstopping\n"));
    free(h);

    cg_gateway_stats_t st;
    cg_gateway_get_stats(c.gw, &st);
    char *m = http_get(port, "/metrics", &status);
    assert_int_equal(status, 200);
    double in = sample_sum(m, "cohortgate_messages_in_total{", in_label, NULL);
    double rows = sample_sum(m, "cohortgate_rows_out_total{", out_label, NULL);
    double rows_oru =
        sample_sum(m, "cohortgate_rows_out_total{", out_label, "spec=\"hl7v2-oru-omop\"", NULL);
    double dead = sample_sum(m, "cohortgate_dead_letter_total{", NULL);
    double latency_n = sample_sum(m, "cohortgate_mapping_latency_seconds_count", NULL);
    /* what was produced, what the gateway counted, what the metrics say */
    assert_int_equal((int)in, N_GOOD + N_JUNK);
    assert_int_equal(st.consumed, N_GOOD + N_JUNK);
    assert_int_equal((int)dead, N_JUNK);
    assert_int_equal(st.dead_lettered, N_JUNK);
    assert_true(rows >= N_GOOD); /* each ORU gives at least a measurement row */
    assert_int_equal((uint64_t)rows, st.records_out);
    assert_true(rows_oru > 0);
    assert_int_equal((int)latency_n, N_GOOD + N_JUNK); /* one observation per message */
    assert_true(sample_sum(m, "cohortgate_producer_queue_messages ", NULL) >= 0);
    assert_true(sample_sum(m, "cohortgate_assigned_partitions ", NULL) >= 0);
    assert_true(sample_sum(m, "process_resident_memory_bytes ", NULL) > 0);
    assert_int_equal((int)sample_sum(m, "cohortgate_up ", NULL), 1);
    double committed = sample_sum(m, "cohortgate_transactions_total{", "committed", NULL);
    assert_int_equal((uint64_t)committed, st.transactions_committed);
    assert_true(eos ? committed >= 1 : committed == 0);
    assert_int_equal((int)sample_sum(m, "cohortgate_transactions_total{", "aborted", NULL), 0);
    free(m);

    /* and the topics hold what the metrics counted */
    tk_msg_t *msgs;
    size_t n = tk_read_all(out_topic, &msgs);
    assert_int_equal(n, st.records_out);
    tk_msgs_free(msgs, n);
    n = tk_read_all(dlq_topic, &msgs);
    assert_int_equal(n, N_JUNK);
    tk_msgs_free(msgs, n);

    cg_gateway_destroy(c.gw);
    cg_config_destroy(cfg);
}

/* Inputs that end without a record, as in issue 12: four that hold no message (dead letters in
 * run, errors in map) and two that map to nothing (counted outcomes in both). */
static const struct {
    const char *bytes;
    size_t len;
    const char *outcome, *type;
} ends[] = {
    {"", 0, "dead_letter", ""},                         /* an empty record */
    {"\xef\xbb\xbf", 3, "dead_letter", ""},             /* a BOM alone */
    {"\x0b\x1c\x0d", 3, "dead_letter", ""},             /* an empty MLLP frame */
    {"FHS|^~\\&|LAB|H\rFTS|0\r", 0, "dead_letter", ""}, /* a batch envelope alone */
    {"MSH|^~\\&|LAB|H|CG|R|20240314||ORU^R01|N1|P|2.5.1\rPID|1||4711^^^H\r"
     "OBR|1|P1|F1|4548-4^HbA1c^LN\r",
     0, "no_rows", "ORU^R01"}, /* an order without results */
    {"MSH|^~\\&|SCH|H|CG|R|20240314||SIU^S12|S1|P|2.5.1\rSCH|1\rPID|1||4711^^^H\r", 0,
     "no_research_content", "SIU^S12"},
};
#define N_ENDS (sizeof(ends) / sizeof(ends[0]))

static size_t end_len(size_t i)
{
    return ends[i].len ? ends[i].len : strlen(ends[i].bytes);
}

/* What `cohortgate map` prints on stderr for input i (its map code path, cg_cli_map_buffer). */
static void map_says(cg_mapping_worker_t *mw, cg_hl7_msg_t *msg, size_t i, char *out, size_t n)
{
    char *text = NULL;
    size_t tl = 0;
    FILE *errs = open_memstream(&text, &tl);
    FILE *recs = fopen("/dev/null", "w");
    cg_cli_map_counts_t cnt = {0};
    cg_cli_map_buffer(mw, msg, "x", ends[i].bytes, end_len(i), 0, recs, errs, &cnt);
    fclose(errs);
    fclose(recs);
    snprintf(out, n, "%s", text ? text : "");
    free(text);
    assert_int_equal(cnt.rows, 0);
}

static void test_every_input_leaves_a_trace_and_map_agrees(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    tk_unique_name(in_topic, sizeof(in_topic), "cg-it-ends-raw");
    tk_unique_name(out_topic, sizeof(out_topic), "cg-it-ends-out");
    tk_unique_name(dlq_topic, sizeof(dlq_topic), "cg-it-ends-dlq");
    tk_unique_name(group, sizeof(group), "cg-it-ends-group");
    assert_int_equal(tk_create_topic(in_topic, 1), 0);
    assert_int_equal(tk_create_topic(out_topic, 1), 0);
    assert_int_equal(tk_create_topic(dlq_topic, 1), 0);
    rd_kafka_t *p = tk_producer();
    for (size_t i = 0; i < N_ENDS; i++)
        assert_int_equal(
            rd_kafka_producev(
                p, RD_KAFKA_V_TOPIC(in_topic),
                RD_KAFKA_V_VALUE(end_len(i) ? (void *)ends[i].bytes : NULL, end_len(i)),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
            RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(p, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(p);

    char text[2048];
    snprintf(text, sizeof(text),
             "{\"group_id\":\"%s\",\"inputs\":[{\"topic\":\"%s\"}],"
             "\"output\":{\"topic\":\"%s\",\"dead_letter_topic\":\"%s\"},"
             "\"mapping\":{\"specs\":\"" CG_SOURCE_DIR "/specs\"},"
             "\"pseudonym\":{\"key_file\":\"" CG_SOURCE_DIR "/tests/golden/key\"},"
             "\"delivery\":{\"commit_interval_ms\":100},\"log\":{\"level\":\"warn\"},"
             "\"metrics\":{\"listen\":\"127.0.0.1:0\"},"
             "\"kafka\":{\"bootstrap.servers\":\"%s\"}}",
             group, in_topic, out_topic, dlq_topic, tk_bootstrap());
    cg_error_t err;
    cg_config_t *cfg = cg_config_load_string(text, "<test>", NULL, &err);
    if (!cfg)
        fail_msg("%s", err.text);
    run_ctx_t c = {0};
    c.gw = cg_gateway_new(cfg, NULL, c.err, sizeof(c.err));
    if (!c.gw)
        fail_msg("%s", c.err);
    int port = cg_gateway_metrics_port(c.gw), status;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, run, &c), 0);
    double counted = 0;
    for (int tries = 0; tries < 240 && counted < N_ENDS; tries++) {
        char *m = http_get(port, "/metrics", &status);
        counted = sample_sum(m, "cohortgate_inputs_total{", NULL);
        free(m);
        if (counted < N_ENDS)
            usleep(250000);
    }
    assert_int_equal((int)counted, N_ENDS);
    cg_gateway_stop(c.gw);
    pthread_join(th, NULL);
    assert_int_equal(c.rc, CG_OK);

    /* each input counted once, by outcome and type */
    char *m = http_get(port, "/metrics", &status);
    for (size_t i = 0; i < N_ENDS; i++) {
        char o[64], t[64];
        snprintf(o, sizeof(o), "outcome=\"%s\"", ends[i].outcome);
        snprintf(t, sizeof(t), "type=\"%s\"", ends[i].type);
        size_t same = 0;
        for (size_t k = 0; k < N_ENDS; k++)
            same +=
                !strcmp(ends[k].outcome, ends[i].outcome) && !strcmp(ends[k].type, ends[i].type);
        assert_int_equal((int)sample_sum(m, "cohortgate_inputs_total{", o, t, NULL), (int)same);
    }
    free(m);
    cg_gateway_stats_t st;
    cg_gateway_get_stats(c.gw, &st);
    assert_int_equal(st.consumed, N_ENDS);
    assert_int_equal(st.records_out, 0);

    /* map, on the same bytes, says what the dead letter says, and shows the other outcomes */
    cg_mapping_opts_t mo = {.specs = CG_SOURCE_DIR "/specs",
                            .key_file = CG_SOURCE_DIR "/tests/golden/key"};
    cg_error_t errs[4];
    size_t n_errs = 0;
    cg_mapping_t *mapping = cg_mapping_load(&mo, errs, 4, &n_errs);
    assert_non_null(mapping);
    char es[256];
    cg_mapping_worker_t *mw = cg_mapping_worker_new(mapping, es, sizeof(es));
    cg_hl7_msg_t *msg = cg_hl7_msg_new(NULL);
    assert_non_null(mw);
    tk_msg_t *dl;
    size_t n_dl = tk_read_all(dlq_topic, &dl), next_dl = 0;
    assert_int_equal(n_dl, 4);
    for (size_t i = 0; i < N_ENDS; i++) {
        char said[1024], want[1024], reason[512];
        map_says(mw, msg, i, said, sizeof(said));
        if (!strcmp(ends[i].outcome, "dead_letter")) {
            const tk_msg_t *d = &dl[next_dl++];
            /* the original bytes, untouched */
            assert_int_equal(d->value_len, end_len(i));
            if (end_len(i))
                assert_memory_equal(d->value, ends[i].bytes, end_len(i));
            assert_non_null(tk_header(d, "cg.error.reason", reason, sizeof(reason)));
            assert_non_null(strstr(reason, "empty input: no MSH segment"));
            snprintf(want, sizeof(want), "x: message 1: decode: %s\n", reason);
            assert_string_equal(said, want);
        } else {
            snprintf(want, sizeof(want), "x: message 1: %s: %s: ", ends[i].outcome, ends[i].type);
            assert_int_equal(strncmp(said, want, strlen(want)), 0);
        }
    }
    tk_msgs_free(dl, n_dl);
    tk_msg_t *recs;
    size_t n_recs = tk_read_all(out_topic, &recs);
    assert_int_equal(n_recs, 0);
    tk_msgs_free(recs, n_recs);
    cg_hl7_msg_destroy(msg);
    cg_mapping_worker_destroy(mw);
    cg_mapping_destroy(mapping);
    cg_gateway_destroy(c.gw);
    cg_config_destroy(cfg);
}

static void test_metrics_reconcile_while_running(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    reconcile(0, 1);
}

static void test_metrics_exactly_once_with_workers(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    reconcile(1, 2);
}

int main(void)
{
    if (!tk_bootstrap())
        printf("SKIPPED: COHORTGATE_TEST_BOOTSTRAP is not set; tests/scripts/test.sh starts a "
               "broker\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_reconcile_while_running),
        cmocka_unit_test(test_metrics_exactly_once_with_workers),
        cmocka_unit_test(test_every_input_leaves_a_trace_and_map_agrees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
