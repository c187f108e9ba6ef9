/* test_kafka_mixed.c - a mixed feed on one raw topic against the real broker: C-CDA documents,
 * HL7 v2 ADT and ORU messages, and junk (JSON, malformed XML, an XXE document), with the input
 * format "auto". The gateway's output is reconciled with the mapping library run in-process on
 * the same inputs: for every input, the records on the output and cohort topics are exactly the
 * rows the specs make of it (count and tables), or it is on the dead-letter topic once with its
 * original bytes and the decoder's stage and code.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_config.h"
#include "cg_gateway.h"
#include "cg_mapping.h"
#include "kafka_util.h"
#include "spec_test_util.h"

#define N_INPUTS   160
#define PARTITIONS 3

static char in_topic[128], out_topic[128], dlq_topic[128], group[128], cohort_prefix[128];

/* Input i: 0 a C-CDA document with a type 2 diabetes problem (t2dm), 1 an ADT A04, 2 an ORU,
 * 3 junk: JSON, malformed XML or an XXE document in turn. */
static size_t make_input(int i, char *buf, size_t n)
{
    switch (i % 4) {
    case 0:
        return (size_t)snprintf(
            buf, n,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<ClinicalDocument xmlns=\"urn:hl7-org:v3\" "
            "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">"
            "<templateId root=\"2.16.840.1.113883.10.20.22.1.2\"/>"
            "<id root=\"2.999.1\" extension=\"D%06d\"/><effectiveTime value=\"20240301\"/>"
            "<recordTarget><patientRole><id root=\"2.999.2\" extension=\"%d\"/><patient>"
            "<administrativeGenderCode code=\"F\" codeSystem=\"2.16.840.1.113883.5.1\"/>"
            "<birthTime value=\"19700101\"/></patient></patientRole></recordTarget>"
            "<component><structuredBody><component><section>"
            "<templateId root=\"2.16.840.1.113883.10.20.22.2.5.1\"/>"
            "<entry><act classCode=\"ACT\" moodCode=\"EVN\"><entryRelationship typeCode=\"SUBJ\">"
            "<observation classCode=\"OBS\" moodCode=\"EVN\">"
            "<templateId root=\"2.16.840.1.113883.10.20.22.4.4\"/>"
            "<effectiveTime><low value=\"2023%02d01\"/></effectiveTime>"
            "<value xsi:type=\"CD\" code=\"44054006\" codeSystem=\"2.16.840.1.113883.6.96\"/>"
            "</observation></entryRelationship></act></entry>"
            "</section></component></structuredBody></component></ClinicalDocument>",
            i, 200000 + i, 1 + i % 12);
    case 1:
        return (size_t)snprintf(buf, n,
                                "MSH|^~\\&|ADT|HOSP|CG|RES|20240314101500||ADT^A04^ADT_A01|T%06d|P|"
                                "2.5.1\rEVN|A04|20240314101500\rPID|1||%d^^^HOSP^MR||Doe^Jane||"
                                "19700101|F\rPV1|1|O|CLINIC^101^1^HOSP||||||||||||||||V%d\r",
                                i, 200000 + i, i);
    case 2:
        return (size_t)snprintf(buf, n,
                                "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01^ORU_R01|T%06d|"
                                "P|2.5.1\rPID|1||%d^^^HOSP^MR||Doe^Jane\rOBX|1|NM|4548-4^HbA1c^LN|"
                                "|6.%d|%%|||||F|||20240314093000\r",
                                i, 200000 + i, i % 10);
    default:
        switch ((i / 4) % 3) {
        case 0:
            return (size_t)snprintf(buf, n, "{\"junk\":%d}", i);
        case 1:
            return (size_t)snprintf(buf, n, "<ClinicalDocument><id extension=\"J%d\">", i);
        default:
            return (size_t)snprintf(buf, n,
                                    "<?xml version=\"1.0\"?>\n<!DOCTYPE d [<!ENTITY x SYSTEM "
                                    "\"file:///etc/passwd\">]><ClinicalDocument>&x;%d"
                                    "</ClinicalDocument>",
                                    i);
        }
    }
}

static int setup(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        return 0;
    tk_unique_name(in_topic, sizeof(in_topic), "cg-it-mixed-raw");
    tk_unique_name(out_topic, sizeof(out_topic), "cg-it-mixed-records");
    tk_unique_name(dlq_topic, sizeof(dlq_topic), "cg-it-mixed-dlq");
    tk_unique_name(group, sizeof(group), "cg-it-mixed-group");
    tk_unique_name(cohort_prefix, sizeof(cohort_prefix), "cg-it-mixed-cohort");
    if (tk_create_topic(in_topic, PARTITIONS) || tk_create_topic(out_topic, PARTITIONS) ||
        tk_create_topic(dlq_topic, PARTITIONS))
        return -1;
    return tk_produce_each(in_topic, N_INPUTS, make_input);
}

/* What the specs make of each input, mapped here with the mapping library alone. */
typedef struct expect {
    char id[64];    /* the records' source message_id; "" for an input that fails */
    size_t rows;    /* records it must give */
    char stage[16]; /* else: the dead letter's cg.error.stage and code */
    char code[32];
    size_t seen; /* records (or dead letters) found for it */
} expect_t;

static expect_t want[N_INPUTS];

static void expect_all(void)
{
    /* the bundle the gateway's config below names: the shipped specs and the golden key */
    cg_mapping_opts_t o = {.specs = CG_SOURCE_DIR "/specs",
                           .key_file = CG_SOURCE_DIR "/tests/golden/key"};
    cg_mapping_worker_t *w;
    cg_mapping_t *m = spec_test_mapping(&o, &w);
    char buf[4096];
    for (int i = 0; i < N_INPUTS; i++) {
        size_t len = make_input(i, buf, sizeof(buf));
        const cg_row_t *rows;
        size_t n;
        cg_error_t me;
        memset(&want[i], 0, sizeof(want[i]));
        if (cg_mapping_worker_map(w, CG_INPUT_AUTO, buf, len, &rows, &n, &me) == CG_OK) {
            assert_true(n > 0);
            snprintf(want[i].id, sizeof(want[i].id), "%.*s", (int)rows[0].message_id.len,
                     rows[0].message_id.ptr);
            want[i].rows = n;
        } else {
            snprintf(want[i].stage, sizeof(want[i].stage), "%s", me.stage);
            snprintf(want[i].code, sizeof(want[i].code), "%s", cg_err_name(me.code));
        }
    }
    cg_mapping_worker_destroy(w);
    cg_mapping_destroy(m);
}

static int input_of(const char *message_id)
{
    for (int i = 0; i < N_INPUTS; i++)
        if (want[i].id[0] && !strcmp(want[i].id, message_id))
            return i;
    return -1;
}

/* Counts the records of a topic against the inputs they came from; returns how many. */
static size_t count_records(const char *topic, int cohort_topic)
{
    tk_msg_t *m;
    size_t n = tk_read_all(topic, &m);
    for (size_t j = 0; j < n; j++) {
        json_error_t je;
        json_t *rec = json_loads(m[j].value, 0, &je);
        assert_non_null(rec);
        const char *mid =
            json_string_value(json_object_get(json_object_get(rec, "source"), "message_id"));
        assert_non_null(mid);
        int i = input_of(mid);
        if (i < 0)
            fail_msg("%s: a record of no input (message_id %s)", topic, mid);
        want[i].seen++;
        size_t nc = json_array_size(json_object_get(rec, "cohorts"));
        assert_true(cohort_topic ? nc > 0 : nc == 0);
        assert_int_equal(m[j].key_len, 40); /* the pseudonym, never the identifier */
        json_decref(rec);
    }
    tk_msgs_free(m, n);
    return n;
}

static void test_mixed_feed(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    expect_all();
    char text[2048];
    snprintf(text, sizeof(text),
             "{\"group_id\":\"%s\",\"inputs\":[{\"topic\":\"%s\",\"format\":\"auto\"}],"
             "\"output\":{\"topic\":\"%s\",\"dead_letter_topic\":\"%s\"},"
             "\"mapping\":{\"specs\":\"" CG_SOURCE_DIR "/specs\"},"
             "\"pseudonym\":{\"key_file\":\"" CG_SOURCE_DIR "/tests/golden/key\"},"
             "\"cohorts\":{\"path\":\"" CG_SOURCE_DIR "/specs/cohorts\","
             "\"topic\":\"%s.{cohort}.{table}\"},"
             "\"delivery\":{\"commit_interval_ms\":100},\"workers\":2,\"log\":{\"level\":\"warn\"},"
             "\"metrics\":{\"listen\":\"off\"},"
             "\"kafka\":{\"bootstrap.servers\":\"%s\",\"session.timeout.ms\":6000}}",
             group, in_topic, out_topic, dlq_topic, cohort_prefix, tk_bootstrap());
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
    cg_gateway_destroy(gw);
    cg_config_destroy(cfg);
    assert_int_equal(st.consumed, N_INPUTS);

    size_t total = count_records(out_topic, 0);
    rd_kafka_t *q = tk_query_handle();
    char **cohorts;
    size_t n_cohorts = tk_list_topics(q, cohort_prefix, &cohorts);
    rd_kafka_destroy(q);
    assert_true(n_cohorts > 0); /* the documents' diabetes problems: t2dm.condition_occurrence */
    for (size_t c = 0; c < n_cohorts; c++)
        total += count_records(cohorts[c], 1);
    tk_strv_free(cohorts, n_cohorts);

    tk_msg_t *dlq;
    size_t n_dlq = tk_read_all(dlq_topic, &dlq);
    char buf[4096], hb[256];
    for (size_t j = 0; j < n_dlq; j++) {
        int i = atoi(dlq[j].key + 1);
        assert_true(i >= 0 && i < N_INPUTS && !want[i].id[0]);
        want[i].seen++;
        size_t len = make_input(i, buf, sizeof(buf));
        assert_int_equal(dlq[j].value_len, len);
        assert_memory_equal(dlq[j].value, buf, len); /* the original bytes */
        assert_string_equal(tk_header(&dlq[j], "cg.error.stage", hb, sizeof(hb)), want[i].stage);
        assert_string_equal(tk_header(&dlq[j], "cg.error.code", hb, sizeof(hb)), want[i].code);
        assert_null(strstr(dlq[j].headers, "root:")); /* no /etc/passwd content, ever */
    }
    tk_msgs_free(dlq, n_dlq);

    size_t rows = 0, docs = 0, dead = 0;
    for (int i = 0; i < N_INPUTS; i++) {
        size_t must = want[i].id[0] ? want[i].rows : 1;
        if (want[i].seen != must)
            fail_msg("input %d (%s): %zu record(s) out, %zu expected", i,
                     want[i].id[0] ? want[i].id : want[i].stage, want[i].seen, must);
        rows += want[i].rows;
        docs += i % 4 == 0 && want[i].id[0];
        dead += !want[i].id[0];
    }
    assert_int_equal(total, rows);
    assert_int_equal(docs, N_INPUTS / 4); /* every document mapped */
    assert_int_equal(dead, N_INPUTS / 4); /* and only the junk failed */
    printf("mixed feed: %d inputs, %zu records, %zu dead letters, %zu documents\n", N_INPUTS, rows,
           dead, docs);
}

int main(void)
{
    if (!tk_bootstrap())
        printf("SKIPPED: COHORTGATE_TEST_BOOTSTRAP is not set; tests/scripts/test.sh starts a "
               "broker\n");
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_mixed_feed)};
    return cmocka_run_group_tests(tests, setup, NULL);
}
