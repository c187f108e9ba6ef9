/* test_kafka_quality.c - entries left out of documents reach the quality topic, against the real
 * broker: C-CDA documents with one malformed encounter date (the corpus's Transfer Summary has
 * 200130212) map their other entries to the record topic and give one quality record each;
 * good documents give none; an HL7 v2 message with a bad OBX (on_error "message", HL7's default)
 * is dead-lettered as before. Quality records carry no key, no value and no patient identifier,
 * and (exactly-once variant) are read with read_committed like the rows of their input.
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

#ifndef CG_TEST_SEMANTICS
#define CG_TEST_SEMANTICS "at-least-once"
#endif

#define N_INPUTS   24
#define PARTITIONS 2

static char in_topic[128], out_topic[128], dlq_topic[128], q_topic[128], group[128];

/* Input i: 0 a document whose second encounter is dated 200130212, 1 a good document, 2 an ORU
 * whose OBX time is no HL7 time. */
static size_t make_input(int i, char *buf, size_t n)
{
    if (i % 3 == 2)
        return (size_t)snprintf(buf, n,
                                "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|Q%06d|P|2.5.1\r"
                                "PID|1||MRN-Q-%d^^^HOSP^MR\rOBX|1|NM|4548-4^HbA1c^LN||7.2|%%|||||F"
                                "|||2024-03-14\r",
                                i, i);
    return (size_t)snprintf(
        buf, n,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<ClinicalDocument xmlns=\"urn:hl7-org:v3\">\n"
        "<templateId root=\"2.16.840.1.113883.10.20.22.1.2\"/>\n"
        "<id root=\"2.999.1\" extension=\"Q%06d\"/><effectiveTime value=\"20240301\"/>\n"
        "<recordTarget><patientRole><id root=\"2.999.2\" extension=\"MRN-Q-%d\"/><patient>"
        "<birthTime value=\"19700101\"/></patient></patientRole></recordTarget>\n"
        "<component><structuredBody><component><section>\n"
        "<templateId root=\"2.16.840.1.113883.10.20.22.2.22.1\"/>\n"
        "<entry><encounter classCode=\"ENC\" moodCode=\"EVN\"><id root=\"2.999.7\" "
        "extension=\"A%d\"/><effectiveTime value=\"20230405\"/></encounter></entry>\n"
        "<entry><encounter classCode=\"ENC\" moodCode=\"EVN\"><id root=\"2.999.7\" "
        "extension=\"B%d\"/>\n<effectiveTime value=\"%s\"/></encounter></entry>\n"
        "</section></component></structuredBody></component></ClinicalDocument>\n",
        i, i, i, i, i % 3 == 0 ? "200130212" : "20230501");
}

static int setup(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        return 0;
    tk_unique_name(in_topic, sizeof(in_topic), "cg-it-quality-raw");
    tk_unique_name(out_topic, sizeof(out_topic), "cg-it-quality-records");
    tk_unique_name(dlq_topic, sizeof(dlq_topic), "cg-it-quality-dlq");
    tk_unique_name(q_topic, sizeof(q_topic), "cg-it-quality-quality");
    tk_unique_name(group, sizeof(group), "cg-it-quality-group");
    if (tk_create_topic(in_topic, PARTITIONS) || tk_create_topic(out_topic, PARTITIONS) ||
        tk_create_topic(dlq_topic, PARTITIONS) || tk_create_topic(q_topic, PARTITIONS))
        return -1;
    return tk_produce_each(in_topic, N_INPUTS, make_input);
}

/* What the specs make of each input, mapped here with the mapping library alone. */
static size_t want_rows[N_INPUTS], want_quality[N_INPUTS];
static int want_dead[N_INPUTS];

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
        const cg_quality_t *q;
        cg_error_t me;
        want_dead[i] =
            cg_mapping_worker_map(w, CG_INPUT_AUTO, buf, len, &rows, &want_rows[i], &me) != CG_OK;
        want_quality[i] = cg_mapping_worker_quality(w, &q);
        /* the test's premise: bad documents map with a finding, ORUs fail */
        assert_int_equal(want_dead[i], i % 3 == 2);
        assert_int_equal(want_quality[i], i % 3 == 0);
    }
    cg_mapping_worker_destroy(w);
    cg_mapping_destroy(m);
}

/* The input at (partition, offset) of the raw topic, by its key "k%06d". */
static int input_at(const tk_msg_t *in, size_t n_in, int32_t partition, int64_t offset)
{
    for (size_t j = 0; j < n_in; j++)
        if (in[j].partition == partition && in[j].offset == offset)
            return atoi(in[j].key + 1);
    return -1;
}

static void test_quality_records_reach_their_topic(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    expect_all();
    char text[2048];
    snprintf(text, sizeof(text),
             "{\"group_id\":\"%s\",\"inputs\":[{\"topic\":\"%s\",\"format\":\"auto\"}],"
             "\"output\":{\"topic\":\"%s\",\"dead_letter_topic\":\"%s\",\"quality_topic\":\"%s\"},"
             "\"mapping\":{\"specs\":\"" CG_SOURCE_DIR "/specs\"},"
             "\"pseudonym\":{\"key_file\":\"" CG_SOURCE_DIR "/tests/golden/key\"},"
             "\"delivery\":{\"semantics\":\"" CG_TEST_SEMANTICS "\",\"commit_interval_ms\":100},"
             "\"log\":{\"level\":\"warn\"},\"metrics\":{\"listen\":\"off\"},"
             "\"kafka\":{\"bootstrap.servers\":\"%s\",\"session.timeout.ms\":6000}}",
             group, in_topic, out_topic, dlq_topic, q_topic, tk_bootstrap());
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

    tk_msg_t *in, *recs, *dlq, *q;
    size_t n_in = tk_read_all(in_topic, &in);
    size_t n_recs = tk_read_all(out_topic, &recs);
    size_t n_dlq = tk_read_all(dlq_topic, &dlq);
    size_t n_q = tk_read_all(q_topic, &q);
    assert_int_equal(n_in, N_INPUTS);
    size_t rows = 0, dead = 0, findings = 0, seen_q[N_INPUTS] = {0};
    for (int i = 0; i < N_INPUTS; i++) {
        rows += want_rows[i];
        dead += (size_t)want_dead[i];
        findings += want_quality[i];
    }
    assert_int_equal(findings, N_INPUTS / 3);
    /* the rows of the good entries all came out, and only the ORUs were dead-lettered */
    assert_int_equal(n_recs, rows);
    assert_int_equal(n_dlq, dead);
    assert_int_equal(n_q, findings);
    char hb[512];
    for (size_t j = 0; j < n_q; j++) {
        const tk_msg_t *m = &q[j];
        assert_true(m->key == NULL || m->key_len == 0); /* no key: nothing of the patient */
        int32_t part = atoi(tk_header(m, "cg.source.partition", hb, sizeof(hb)));
        int64_t off = atoll(tk_header(m, "cg.source.offset", hb, sizeof(hb)));
        int i = input_at(in, n_in, part, off);
        assert_true(i >= 0 && i < N_INPUTS);
        assert_int_equal(i % 3, 0); /* a document with a bad entry */
        seen_q[i]++;
        assert_string_equal(tk_header(m, "cg.source.topic", hb, sizeof(hb)), in_topic);
        assert_string_equal(tk_header(m, "cg.spec", hb, sizeof(hb)), "cda-ccda-omop");
        assert_string_equal(tk_header(m, "cg.rule", hb, sizeof(hb)), "encounters");
        assert_string_equal(tk_header(m, "cg.quality.reason", hb, sizeof(hb)), "invalid_datetime");
        json_error_t je;
        json_t *v = json_loads(m->value, 0, &je);
        if (!v)
            fail_msg("quality record is not JSON: %s: %s", je.text, m->value);
        assert_string_equal(json_string_value(json_object_get(v, "kind")), "quality");
        assert_string_equal(json_string_value(json_object_get(v, "stage")), "map");
        assert_string_equal(json_string_value(json_object_get(v, "rule")), "encounters");
        assert_string_equal(json_string_value(json_object_get(v, "column")), "visit_start_date");
        assert_string_equal(json_string_value(json_object_get(v, "reason")), "invalid_datetime");
        json_t *e = json_object_get(v, "entry");
        assert_int_equal(json_integer_value(json_object_get(e, "position")), 2);
        assert_string_equal(json_string_value(json_object_get(e, "xpath")),
                            "/ClinicalDocument/component/structuredBody/component/section/"
                            "entry[2]/encounter");
        assert_int_equal(json_integer_value(json_object_get(e, "line")), 9);
        json_t *src = json_object_get(v, "source");
        assert_string_equal(json_string_value(json_object_get(src, "topic")), in_topic);
        assert_int_equal(json_integer_value(json_object_get(src, "offset")), off);
        json_decref(v);
        /* no value, no identifier, no document id, in the value or the headers */
        char mrn[32], doc[32];
        snprintf(mrn, sizeof(mrn), "MRN-Q-%d", i);
        snprintf(doc, sizeof(doc), "Q%06d", i);
        const char *never[] = {"200130212", mrn, doc};
        for (size_t k = 0; k < 3; k++)
            if (strstr(m->value, never[k]) || strstr(m->headers, never[k]))
                fail_msg("%s in the quality record: %s %s", never[k], m->headers, m->value);
    }
    for (int i = 0; i < N_INPUTS; i++)
        assert_int_equal(seen_q[i], want_quality[i]);
    tk_msgs_free(in, n_in);
    tk_msgs_free(recs, n_recs);
    tk_msgs_free(dlq, n_dlq);
    tk_msgs_free(q, n_q);
    printf("quality (%s): %d inputs, %zu records, %zu dead letters, %zu quality records\n",
           CG_TEST_SEMANTICS, N_INPUTS, rows, dead, findings);
}

int main(void)
{
    if (!tk_bootstrap())
        printf("SKIPPED: COHORTGATE_TEST_BOOTSTRAP is not set; tests/scripts/test.sh starts a "
               "broker\n");
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_quality_records_reach_their_topic)};
    return cmocka_run_group_tests(tests, setup, NULL);
}
