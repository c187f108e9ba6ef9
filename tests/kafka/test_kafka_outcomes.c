/* test_kafka_outcomes.c - output.outcome_topic against the real broker, exactly-once with two
 * injected aborts: every input (records, no rows, no research content, a dead letter, a document
 * with an entry left out) has exactly one committed outcome record, which says how it ended and
 * how many records and quality records it gave (reconciled with those topics by source
 * position), keyed by its topic and partition, with nothing of the patient; the aborted
 * transactions' outcome records stay invisible with their records. At-least-once variant: the
 * same, without aborts. */
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
#include "kafka_util.h"
#include "testing.h"

#ifndef CG_TEST_SEMANTICS
#define CG_TEST_SEMANTICS "exactly-once"
#endif

#define N_INPUTS   30
#define PARTITIONS 2

static char in_topic[128], out_topic[128], dlq_topic[128], q_topic[128], oc_topic[128], group[128];

/* Input i by i % 5: an ADT^A01 (3 records), an ORU with no OBX (no rows), an SIU (no research
 * content), junk (a dead letter), a C-CDA whose second encounter is malformed (records and one
 * quality record). */
static size_t make_input(int i, char *buf, size_t n)
{
    switch (i % 5) {
    case 0:
        return (size_t)snprintf(buf, n,
                                "MSH|^~\\&|ADT|HOSP|CG|RES|20240301101500||ADT^A01|A%04d|P|2.5.1\r"
                                "EVN|A01|20240301101500\rPID|1||MRN-OC-%d^^^HOSP^MR||Doe^J||"
                                "19700101|F\rPV1|1|I|4W^401^1^HOSP||||||||||||||||V-%d^^^HOSP\r",
                                i, i, i);
    case 1:
        return (size_t)snprintf(buf, n,
                                "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|O%04d|P|2.5.1\r"
                                "PID|1||MRN-OC-%d^^^HOSP^MR\rOBR|1|ORD%d||4548-4^HbA1c^LN\r",
                                i, i, i);
    case 2:
        return (size_t)snprintf(
            buf, n, "MSH|^~\\&|SCH|HOSP|CG|RES|20240314101500||SIU^S12|S%04d|P|2.5.1\rSCH|%d\r", i,
            i);
    case 3:
        return (size_t)snprintf(buf, n, "NOT HL7 MRN-OC-%d", i);
    default:
        return (size_t)snprintf(
            buf, n,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<ClinicalDocument xmlns=\"urn:hl7-org:v3\">\n"
            "<templateId root=\"2.16.840.1.113883.10.20.22.1.2\"/>\n"
            "<id root=\"2.999.1\" extension=\"OC%06d\"/><effectiveTime value=\"20240301\"/>\n"
            "<recordTarget><patientRole><id root=\"2.999.2\" extension=\"MRN-OC-%d\"/><patient>"
            "<birthTime value=\"19700101\"/></patient></patientRole></recordTarget>\n"
            "<component><structuredBody><component><section>\n"
            "<templateId root=\"2.16.840.1.113883.10.20.22.2.22.1\"/>\n"
            "<entry><encounter classCode=\"ENC\" moodCode=\"EVN\"><id root=\"2.999.7\" "
            "extension=\"A%d\"/><effectiveTime value=\"20230405\"/></encounter></entry>\n"
            "<entry><encounter classCode=\"ENC\" moodCode=\"EVN\"><id root=\"2.999.7\" "
            "extension=\"B%d\"/>\n<effectiveTime value=\"200130212\"/></encounter></entry>\n"
            "</section></component></structuredBody></component></ClinicalDocument>\n",
            i, i, i, i);
    }
}

static int setup(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        return 0;
    tk_unique_name(in_topic, sizeof(in_topic), "cg-it-oc-raw");
    tk_unique_name(out_topic, sizeof(out_topic), "cg-it-oc-records");
    tk_unique_name(dlq_topic, sizeof(dlq_topic), "cg-it-oc-dlq");
    tk_unique_name(q_topic, sizeof(q_topic), "cg-it-oc-quality");
    tk_unique_name(oc_topic, sizeof(oc_topic), "cg-it-oc-outcomes");
    tk_unique_name(group, sizeof(group), "cg-it-oc-group");
    if (tk_create_topic(in_topic, PARTITIONS) || tk_create_topic(out_topic, PARTITIONS) ||
        tk_create_topic(dlq_topic, 1) || tk_create_topic(q_topic, 1) ||
        tk_create_topic(oc_topic, PARTITIONS))
        return -1;
    return tk_produce_each(in_topic, N_INPUTS, make_input);
}

/* The input at (partition, offset) of the raw topic, by its key "k%06d"; -1 when none. */
static int input_at(const tk_msg_t *in, size_t n_in, int32_t partition, int64_t offset)
{
    for (size_t j = 0; j < n_in; j++)
        if (in[j].partition == partition && in[j].offset == offset)
            return atoi(in[j].key + 1);
    return -1;
}

/* Counts the messages of m[0..n) from each input (by their cg.source.* headers) into per[]. */
static void count_by_input(const tk_msg_t *m, size_t n, const tk_msg_t *in, size_t n_in, int *per)
{
    char hb[512];
    for (size_t j = 0; j < n; j++) {
        int32_t part = atoi(tk_header(&m[j], "cg.source.partition", hb, sizeof(hb)));
        int64_t off = atoll(tk_header(&m[j], "cg.source.offset", hb, sizeof(hb)));
        int i = input_at(in, n_in, part, off);
        assert_true(i >= 0 && i < N_INPUTS);
        per[i]++;
    }
}

static void test_one_outcome_per_input(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    int eos = !strcmp(CG_TEST_SEMANTICS, "exactly-once");
    char text[2048];
    snprintf(text, sizeof(text),
             "{\"group_id\":\"%s\",\"inputs\":[{\"topic\":\"%s\",\"format\":\"auto\"}],"
             "\"output\":{\"topic\":\"%s\",\"dead_letter_topic\":\"%s\",\"quality_topic\":\"%s\","
             "\"outcome_topic\":\"%s\"},"
             "\"mapping\":{\"specs\":\"" CG_SOURCE_DIR "/specs\"},"
             "\"pseudonym\":{\"key_file\":\"" CG_SOURCE_DIR "/tests/golden/key\"},"
             "\"delivery\":{\"semantics\":\"" CG_TEST_SEMANTICS "\",\"commit_interval_ms\":100,"
             "\"transaction_max_messages\":4},"
             "\"log\":{\"level\":\"error\"},\"metrics\":{\"listen\":\"off\"},"
             "\"kafka\":{\"bootstrap.servers\":\"%s\",\"session.timeout.ms\":6000}}",
             group, in_topic, out_topic, dlq_topic, q_topic, oc_topic, tk_bootstrap());
    cg_error_t cerr;
    cg_config_t *cfg = cg_config_load_string(text, "<test>", NULL, &cerr);
    if (!cfg)
        fail_msg("%s:%d:%d: %s", cerr.file, cerr.line, cerr.column, cerr.text);
    char errstr[512];
    cg_gateway_opts_t o = {.idle_exit_ms = 3000};
    cg_gateway_t *gw = cg_gateway_new(cfg, &o, errstr, sizeof(errstr));
    assert_non_null(gw);
    if (eos) /* two transactions aborted: their outcome records must vanish with their records */
        cg_engine_testing_inject_aborts(gw, 2);
    if (cg_gateway_run(gw, errstr, sizeof(errstr)) != CG_OK)
        fail_msg("run: %s", errstr);
    cg_gateway_destroy(gw);
    cg_config_destroy(cfg);

    tk_msg_t *in, *recs, *dlq, *q, *oc;
    size_t n_in = tk_read_all(in_topic, &in), n_recs = tk_read_all(out_topic, &recs);
    size_t n_dlq = tk_read_all(dlq_topic, &dlq), n_q = tk_read_all(q_topic, &q);
    size_t n_oc = tk_read_all(oc_topic, &oc);
    assert_int_equal(n_in, N_INPUTS);
    int per_rec[N_INPUTS] = {0}, per_q[N_INPUTS] = {0}, per_dl[N_INPUTS] = {0},
        per_oc[N_INPUTS] = {0};
    count_by_input(recs, n_recs, in, n_in, per_rec);
    count_by_input(q, n_q, in, n_in, per_q);
    count_by_input(dlq, n_dlq, in, n_in, per_dl);
    count_by_input(oc, n_oc, in, n_in, per_oc);
    /* exactly once each (at-least-once: nothing was replayed in this run either) */
    assert_int_equal(n_oc, N_INPUTS);
    static const char *const want[] = {"records", "no_rows", "no_research_content", "dead_letter",
                                       "records"};
    char hb[512];
    for (size_t j = 0; j < n_oc; j++) {
        const tk_msg_t *m = &oc[j];
        int32_t part = atoi(tk_header(m, "cg.source.partition", hb, sizeof(hb)));
        int64_t off = atoll(tk_header(m, "cg.source.offset", hb, sizeof(hb)));
        int i = input_at(in, n_in, part, off);
        assert_int_equal(per_oc[i], 1);
        char key[256];
        snprintf(key, sizeof(key), "%s:%d", in_topic, (int)part);
        assert_int_equal(m->key_len, strlen(key));
        assert_memory_equal(m->key, key, m->key_len);
        assert_string_equal(tk_header(m, "cg.outcome", hb, sizeof(hb)), want[i % 5]);
        json_error_t je;
        json_t *v = json_loads(m->value, 0, &je);
        if (!v)
            fail_msg("not JSON: %s: %s", je.text, m->value);
        assert_string_equal(json_string_value(json_object_get(v, "kind")), "outcome");
        assert_string_equal(json_string_value(json_object_get(v, "outcome")), want[i % 5]);
        json_t *src = json_object_get(v, "source");
        assert_string_equal(json_string_value(json_object_get(src, "topic")), in_topic);
        assert_int_equal(json_integer_value(json_object_get(src, "partition")), part);
        assert_int_equal(json_integer_value(json_object_get(src, "offset")), off);
        if (i % 5 == 3) {
            assert_int_equal(per_dl[i], 1);
            assert_string_equal(json_string_value(json_object_get(v, "stage")), "decode");
            assert_non_null(json_object_get(v, "code"));
            assert_null(json_object_get(v, "records"));
        } else {
            assert_int_equal(per_dl[i], 0);
            /* what it says it gave is what the topics hold from it */
            assert_int_equal(json_integer_value(json_object_get(v, "records")), per_rec[i]);
            assert_int_equal(json_integer_value(json_object_get(v, "quality")), per_q[i]);
        }
        if (i % 5 == 0)
            assert_int_equal(per_rec[i], 3);
        if (i % 5 == 4)
            assert_int_equal(per_q[i], 1);
        if (i % 5 == 2)
            assert_string_equal(json_string_value(json_object_get(v, "spec")),
                                "hl7v2-no-research-content");
        const char *type = json_string_value(json_object_get(v, "type"));
        if (i % 5 == 1)
            assert_string_equal(type, "ORU^R01");
        json_decref(v);
        /* nothing of the patient or the input's values */
        char mrn[32];
        snprintf(mrn, sizeof(mrn), "MRN-OC-%d", i);
        const char *never[] = {mrn, "Doe", "200130212", "NOT HL7"};
        for (size_t k = 0; k < sizeof(never) / sizeof(never[0]); k++)
            if (strstr(m->value, never[k]) || strstr(m->headers, never[k]))
                fail_msg("%s in the outcome record: %s %s", never[k], m->headers, m->value);
    }
    for (int i = 0; i < N_INPUTS; i++)
        assert_int_equal(per_oc[i], 1);
    tk_msgs_free(in, n_in);
    tk_msgs_free(recs, n_recs);
    tk_msgs_free(dlq, n_dlq);
    tk_msgs_free(q, n_q);
    tk_msgs_free(oc, n_oc);
    printf("outcomes (%s): %d inputs, %zu outcome records\n", CG_TEST_SEMANTICS, N_INPUTS, n_oc);
}

int main(void)
{
    if (!tk_bootstrap())
        printf("SKIPPED: COHORTGATE_TEST_BOOTSTRAP is not set; tests/scripts/test.sh starts a "
               "broker\n");
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_one_outcome_per_input)};
    return cmocka_run_group_tests(tests, setup, NULL);
}
