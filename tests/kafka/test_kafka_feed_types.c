/* test_kafka_feed_types.c - a feed's own handling of message types, against the real broker: on
 * topic A, inputs[].no_research_content consumes an ORU^R01 (which the specs map) and a ZZZ
 * (which no spec takes) quietly, and inputs[].dead_letter dead-letters the MDMs; on topic B, an
 * SIU (which the shipped specs declare no research content) is dead-lettered, while the same ORU
 * maps. Records, dead letters (their reason and source) and cohortgate_inputs_total reconcile
 * with that, input by input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cg_config.h"
#include "cg_gateway.h"
#include "kafka_util.h"

static char a_topic[128], b_topic[128], out_topic[128], dlq_topic[128], group[128];

#define ADT                                                                                        \
    "MSH|^~\\&|ADT|HOSP|CG|RES|20240301101500||ADT^A01|A%04d|P|2.5.1\r"                            \
    "EVN|A01|20240301101500\rPID|1||MRN-%d^^^HOSP^MR||Doe^J||19700101|F\r"                         \
    "PV1|1|I|4W^401^1^HOSP||||||||||||||||V-%d^^^HOSP\r"
#define ORU                                                                                        \
    "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|O%04d|P|2.5.1\rPID|1||MRN-%d^^^HOSP^MR\r"   \
    "OBR|1|ORD%d||4548-4^HbA1c^LN|||20240314100000\r"                                              \
    "OBX|1|NM|4548-4^HbA1c^LN||7.2|%%|||||F|||20240314100000\r"
#define ZZZ "MSH|^~\\&|X|HOSP|CG|RES|20240314101500||ZZZ^Z01|Z%04d|P|2.5.1\rPID|1||MRN-%d\r"
#define MDM                                                                                        \
    "MSH|^~\\&|TR|HOSP|CG|RES|20240325140000||MDM^T02|D%04d|P|2.5.1\rEVN|T02|20240325140000\r"     \
    "PID|1||MRN-%d^^^HOSP^MR\rTXA|1|DS^Discharge|TX|20240325133000||20240325130000||||||DOC-%d\r"
#define SIU "MSH|^~\\&|SCH|HOSP|CG|RES|20240314101500||SIU^S12|S%04d|P|2.5.1\rSCH|%d\r"
#define MFN "MSH|^~\\&|MF|HOSP|CG|RES|20240314101500||MFN^M02|M%04d|P|2.5.1\rMFI|PRA%d\r"

/* Topic A: ADT, ORU, ZZZ, MDM, again and again. */
#define N_A 12
static size_t make_a(int i, char *buf, size_t n)
{
    const char *f[] = {ADT, ORU, ZZZ, MDM};
    return (size_t)snprintf(buf, n, f[i % 4], i, i, i);
}

/* Topic B: SIU, ORU, MFN. */
#define N_B 9
static size_t make_b(int i, char *buf, size_t n)
{
    const char *f[] = {SIU, ORU, MFN};
    return (size_t)snprintf(buf, n, f[i % 3], i, i, i);
}

static int setup(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        return 0;
    tk_unique_name(a_topic, sizeof(a_topic), "cg-it-types-a");
    tk_unique_name(b_topic, sizeof(b_topic), "cg-it-types-b");
    tk_unique_name(out_topic, sizeof(out_topic), "cg-it-types-records");
    tk_unique_name(dlq_topic, sizeof(dlq_topic), "cg-it-types-dlq");
    tk_unique_name(group, sizeof(group), "cg-it-types-group");
    if (tk_create_topic(a_topic, 2) || tk_create_topic(b_topic, 1) ||
        tk_create_topic(out_topic, 2) || tk_create_topic(dlq_topic, 1))
        return -1;
    return tk_produce_each(a_topic, N_A, make_a) || tk_produce_each(b_topic, N_B, make_b);
}

/* GET /metrics; the body (malloc'ed). */
static char *metrics(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {60, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    const char *req = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    for (ssize_t r; (r = recv(fd, out + len, cap - len - 1, 0)) > 0;)
        if ((len += (size_t)r) + 1 >= cap)
            out = realloc(out, cap *= 2);
    close(fd);
    out[len] = '\0';
    return out;
}

/* The sample of cohortgate_inputs_total{outcome,type}; 0 when there is none. */
static int inputs_total(const char *text, const char *outcome, const char *type)
{
    char want[256];
    snprintf(want, sizeof(want), "cohortgate_inputs_total{outcome=\"%s\",type=\"%s\"} ", outcome,
             type);
    const char *at = strstr(text, want);
    return at ? atoi(at + strlen(want)) : 0;
}

/* The input (its index on its topic) at topic/partition/offset, by its key "k%06d". */
static int input_at(const tk_msg_t *in, size_t n, int32_t partition, int64_t offset)
{
    for (size_t j = 0; j < n; j++)
        if (in[j].partition == partition && in[j].offset == offset)
            return atoi(in[j].key + 1);
    return -1;
}

static void test_feed_handles_its_types(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    char text[2048];
    snprintf(text, sizeof(text),
             "{\"group_id\":\"%s\",\"inputs\":["
             "{\"topic\":\"%s\",\"no_research_content\":[\"ORU^R01\",\"ZZZ\"],"
             "\"dead_letter\":[\"MDM\"]},"
             "{\"topic\":\"%s\",\"dead_letter\":\"SIU\"}],"
             "\"output\":{\"topic\":\"%s\",\"dead_letter_topic\":\"%s\"},"
             "\"mapping\":{\"specs\":\"" CG_SOURCE_DIR "/specs\"},"
             "\"pseudonym\":{\"key_file\":\"" CG_SOURCE_DIR "/tests/golden/key\"},"
             "\"delivery\":{\"commit_interval_ms\":100},\"log\":{\"level\":\"warn\"},"
             "\"metrics\":{\"listen\":\"127.0.0.1:0\"},"
             "\"kafka\":{\"bootstrap.servers\":\"%s\",\"session.timeout.ms\":6000}}",
             group, a_topic, b_topic, out_topic, dlq_topic, tk_bootstrap());
    cg_error_t cerr;
    cg_config_t *cfg = cg_config_load_string(text, "<test>", NULL, &cerr);
    if (!cfg)
        fail_msg("%s:%d:%d: %s", cerr.file, cerr.line, cerr.column, cerr.text);
    char errstr[512];
    cg_gateway_opts_t o = {.idle_exit_ms = 3000};
    cg_gateway_t *gw = cg_gateway_new(cfg, &o, errstr, sizeof(errstr));
    assert_non_null(gw);
    if (cg_gateway_run(gw, errstr, sizeof(errstr)) != CG_OK)
        fail_msg("run: %s", errstr);
    cg_gateway_stats_t st;
    cg_gateway_get_stats(gw, &st);
    assert_int_equal(st.consumed, N_A + N_B);
    char *m = metrics(cg_gateway_metrics_port(gw));
    cg_gateway_destroy(gw);
    cg_config_destroy(cfg);

    /* every input counted once, the feed's entries as the types of its own outcomes */
    assert_int_equal(inputs_total(m, "no_research_content", "ORU^R01"), N_A / 4);
    assert_int_equal(inputs_total(m, "no_research_content", "ZZZ"), N_A / 4);
    assert_int_equal(inputs_total(m, "dead_letter", "MDM"), N_A / 4);
    assert_int_equal(inputs_total(m, "dead_letter", "SIU"), N_B / 3);
    assert_int_equal(inputs_total(m, "no_research_content", "MFN"), N_B / 3); /* the specs' */
    /* the ADTs of A and the ORUs of B map */
    assert_int_equal(inputs_total(m, "records", "ADT^A01"), N_A / 4);
    assert_int_equal(inputs_total(m, "records", "ORU^R01"), N_B / 3);
    free(m);

    tk_msg_t *a, *b, *recs, *dlq;
    size_t n_a = tk_read_all(a_topic, &a), n_b = tk_read_all(b_topic, &b);
    size_t n_recs = tk_read_all(out_topic, &recs), n_dlq = tk_read_all(dlq_topic, &dlq);
    assert_int_equal(n_a, N_A);
    assert_int_equal(n_b, N_B);
    char hb[512];
    /* records: only of A's ADTs (3 each: person, visit, care site) and B's ORUs (1 each) */
    assert_int_equal(n_recs, N_A / 4 * 3 + N_B / 3);
    for (size_t j = 0; j < n_recs; j++) {
        const char *t = tk_header(&recs[j], "cg.source.topic", hb, sizeof(hb));
        int is_a = !strcmp(t, a_topic);
        int32_t part = atoi(tk_header(&recs[j], "cg.source.partition", hb, sizeof(hb)));
        int64_t off = atoll(tk_header(&recs[j], "cg.source.offset", hb, sizeof(hb)));
        int i = is_a ? input_at(a, n_a, part, off) : input_at(b, n_b, part, off);
        assert_true(i >= 0);
        assert_int_equal(i % (is_a ? 4 : 3), is_a ? 0 : 1);
    }
    /* dead letters: A's MDMs and B's SIUs, with the reason and the original bytes */
    assert_int_equal(n_dlq, N_A / 4 + N_B / 3);
    for (size_t j = 0; j < n_dlq; j++) {
        const char *t = tk_header(&dlq[j], "cg.source.topic", hb, sizeof(hb));
        int is_a = !strcmp(t, a_topic);
        int32_t part = atoi(tk_header(&dlq[j], "cg.source.partition", hb, sizeof(hb)));
        int64_t off = atoll(tk_header(&dlq[j], "cg.source.offset", hb, sizeof(hb)));
        int i = is_a ? input_at(a, n_a, part, off) : input_at(b, n_b, part, off);
        assert_true(i >= 0);
        assert_int_equal(i % (is_a ? 4 : 3), is_a ? 3 : 0);
        assert_string_equal(tk_header(&dlq[j], "cg.error.stage", hb, sizeof(hb)), "select");
        const char *want = is_a ? "MDM messages are dead-lettered on this input"
                                : "SIU messages are dead-lettered on this input";
        if (!strstr(tk_header(&dlq[j], "cg.error.reason", hb, sizeof(hb)), want))
            fail_msg("reason '%s' lacks '%s'", hb, want);
        assert_non_null(strstr(dlq[j].value, is_a ? "MDM^T02" : "SIU^S12"));
    }
    tk_msgs_free(a, n_a);
    tk_msgs_free(b, n_b);
    tk_msgs_free(recs, n_recs);
    tk_msgs_free(dlq, n_dlq);
}

int main(void)
{
    if (!tk_bootstrap())
        printf("SKIPPED: COHORTGATE_TEST_BOOTSTRAP is not set; tests/scripts/test.sh starts a "
               "broker\n");
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_feed_handles_its_types)};
    return cmocka_run_group_tests(tests, setup, NULL);
}
