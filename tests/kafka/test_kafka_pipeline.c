/* test_kafka_pipeline.c - the gateway against the real Apache Kafka broker.
 *
 * 1,000 inputs, some of them junk and some HL7 that cannot be mapped, go to a raw topic; the
 * gateway runs in-process with the shipped specs until idle; every input must come out exactly
 * once across the record and dead-letter topics (junk with its original bytes and an error
 * header), records keyed by the patient's pseudonym, and the group's committed offsets must
 * reach the end of the input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_config.h"
#include "cg_gateway.h"
#include "cg_pseudo.h"
#include "kafka_util.h"

#define N_INPUTS   1000
#define PARTITIONS 3
/* tests/kafka/CMakeLists.txt builds this file again for other delivery semantics and workers */
#ifndef CG_TEST_SEMANTICS
#define CG_TEST_SEMANTICS "at-least-once"
#endif
#ifndef CG_TEST_WORKERS
#define CG_TEST_WORKERS 1
#endif

static char in_topic[128], out_topic[128], dlq_topic[128], group[128], cohort_prefix[128];
static char t2dm_topic[256];

/* HbA1c of input i: 6.0 to 6.9; from 6.5 on the row belongs to the shipped t2dm cohort */
static int in_t2dm(int i)
{
    return i % 10 >= 5;
}

static int is_junk(int i)
{
    return i % 10 == 7 || i % 97 == 0;
}

/* HL7 v2 that decodes but cannot be mapped: the patient identifier is empty */
static int is_unmappable(int i)
{
    return !is_junk(i) && i % 50 == 3;
}

/* Input i: an HL7 v2 message with control id T<i>, or one of several kinds of junk. */
static size_t make_input(int i, char *buf, size_t n)
{
    if (is_unmappable(i))
        return (size_t)snprintf(buf, n,
                                "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01^ORU_R01|T%06d|"
                                "P|2.5.1\rPID|1||\rOBX|1|NM|4548-4^HbA1c^LN||7.1|%%\r",
                                i);
    if (!is_junk(i))
        return (size_t)snprintf(buf, n,
                                "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01^ORU_R01|T%06d|"
                                "P|2.5.1\rPID|1||%d^^^HOSP^MR||Doe^Jane\rOBX|1|NM|4548-4^HbA1c^LN|"
                                "|6.%d|%%|||||F|||20240314093000\r",
                                i, 100000 + i, i % 10);
    switch (i % 4) {
    case 0:
        return (size_t)snprintf(buf, n, "{\"junk\":%d}", i);
    case 1: /* binary with NUL bytes */
        memset(buf, 0, 16);
        snprintf(buf + 4, n - 4, "J%06d", i);
        buf[12] = (char)0xFF;
        return 16;
    case 2:
        return (size_t)snprintf(buf, n, "MSA|AA|J%06d\r", i);
    default:
        return 0; /* empty value */
    }
}

static int setup(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        return 0;
    tk_unique_name(in_topic, sizeof(in_topic), "cg-it-raw");
    tk_unique_name(out_topic, sizeof(out_topic), "cg-it-records");
    tk_unique_name(dlq_topic, sizeof(dlq_topic), "cg-it-dlq");
    tk_unique_name(group, sizeof(group), "cg-it-group");
    tk_unique_name(cohort_prefix, sizeof(cohort_prefix), "cg-it-cohort");
    snprintf(t2dm_topic, sizeof(t2dm_topic), "%s.t2dm.measurement", cohort_prefix);
    if (tk_create_topic(in_topic, PARTITIONS) || tk_create_topic(out_topic, PARTITIONS) ||
        tk_create_topic(dlq_topic, PARTITIONS))
        return -1;
    return tk_produce_each(in_topic, N_INPUTS, make_input);
}

static cg_config_t *make_config(void)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "{\"group_id\":\"%s\",\"inputs\":[{\"topic\":\"%s\"}],"
             "\"output\":{\"topic\":\"%s\",\"dead_letter_topic\":\"%s\"},"
             "\"mapping\":{\"specs\":\"" CG_SOURCE_DIR "/specs\"},"
             "\"pseudonym\":{\"key_file\":\"" CG_SOURCE_DIR "/tests/golden/key\"},"
             "\"cohorts\":{\"path\":\"" CG_SOURCE_DIR "/specs/cohorts\","
             "\"topic\":\"%s.{cohort}.{table}\"},"
             "\"delivery\":{\"commit_interval_ms\":100,\"semantics\":\"" CG_TEST_SEMANTICS "\"},"
             "\"workers\":%d,\"log\":{\"level\":\"warn\"},"
             "\"kafka\":{\"bootstrap.servers\":\"%s\",\"session.timeout.ms\":6000}}",
             group, in_topic, out_topic, dlq_topic, cohort_prefix, CG_TEST_WORKERS, tk_bootstrap());
    cg_error_t err;
    cg_config_t *cfg = cg_config_load_string(text, "<test>", NULL, &err);
    if (!cfg)
        fprintf(stderr, "%s:%d:%d: %s\n", err.file, err.line, err.column, err.text);
    return cfg;
}

static void run_gateway(cg_gateway_stats_t *st)
{
    cg_config_t *cfg = make_config();
    assert_non_null(cfg);
    char errstr[512];
    cg_gateway_opts_t o = {.idle_exit_ms = 3000};
    cg_gateway_t *gw = cg_gateway_new(cfg, &o, errstr, sizeof(errstr));
    assert_non_null(gw);
    cg_err_t rc = cg_gateway_run(gw, errstr, sizeof(errstr));
    if (rc)
        fprintf(stderr, "run: %s\n", errstr);
    assert_int_equal(rc, CG_OK);
    cg_gateway_get_stats(gw, st);
    cg_gateway_destroy(gw);
    cg_config_destroy(cfg);
}

/* Per-partition order: the records of one input partition that share an output partition
 * come in the order of their input offsets (whatever worker mapped them). */
static void assert_source_order(const tk_msg_t *m, size_t n, int out_partitions)
{
    int64_t last[16][PARTITIONS];
    assert_true(out_partitions <= 16);
    for (int o = 0; o < out_partitions; o++)
        for (int p = 0; p < PARTITIONS; p++)
            last[o][p] = -1;
    char hb[64];
    for (size_t j = 0; j < n; j++) {
        int src = atoi(tk_header(&m[j], "cg.source.partition", hb, sizeof(hb)));
        int64_t off = atoll(tk_header(&m[j], "cg.source.offset", hb, sizeof(hb)));
        assert_true(m[j].partition < out_partitions && src >= 0 && src < PARTITIONS);
        assert_true(off > last[m[j].partition][src]);
        last[m[j].partition][src] = off;
    }
}

/* The input a record came from, by its source.message_id: the keyed id of T%06d under the
 * config's key (pseudonym.message_id keyed, the default), never the sender's MSH-10. */
static int input_of(const char *value)
{
    static char mids[N_INPUTS][CG_PSEUDO_MESSAGE_ID_LEN + 1];
    if (!mids[0][0]) {
        char err[256], id[16];
        cg_pseudo_key_t *k =
            cg_pseudo_key_load(CG_SOURCE_DIR "/tests/golden/key", NULL, err, sizeof(err));
        cg_pseudo_t *p = k ? cg_pseudo_new(k, 0, err, sizeof(err)) : NULL;
        cg_pseudo_key_destroy(k);
        assert_non_null(p);
        for (int i = 0; i < N_INPUTS; i++) {
            int n = snprintf(id, sizeof(id), "T%06d", i);
            assert_int_equal(cg_pseudo_message_id(p, (cg_slice_t){id, (size_t)n}, mids[i]), CG_OK);
        }
        cg_pseudo_destroy(p);
    }
    assert_null(strstr(value, "\"message_id\":\"T"));
    const char *mid = strstr(value, "\"message_id\":\"");
    assert_non_null(mid);
    mid += strlen("\"message_id\":\"");
    for (int i = 0; i < N_INPUTS; i++)
        if (!strncmp(mid, mids[i], CG_PSEUDO_MESSAGE_ID_LEN) &&
            mid[CG_PSEUDO_MESSAGE_ID_LEN] == '"')
            return i;
    fail_msg("a record of no input: %.80s", mid);
    return -1;
}

static void test_every_input_exactly_once(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip(); /* tests/scripts/test.sh starts the broker and sets COHORTGATE_TEST_BOOTSTRAP */

    cg_gateway_stats_t st;
    run_gateway(&st);
    int n_junk = 0, n_unmappable = 0;
    for (int i = 0; i < N_INPUTS; i++) {
        n_junk += is_junk(i);
        n_unmappable += is_unmappable(i);
    }
    assert_true(n_unmappable > 0);
    int n_dead = n_junk + n_unmappable, n_t2dm = 0;
    for (int i = 0; i < N_INPUTS; i++)
        n_t2dm += !is_junk(i) && !is_unmappable(i) && in_t2dm(i);
    assert_true(n_t2dm > 0);
    assert_int_equal(st.consumed, N_INPUTS);
    assert_int_equal(st.records_out, N_INPUTS - n_dead);
    assert_int_equal(st.dead_lettered, n_dead);
    assert_int_equal(st.workers, CG_TEST_WORKERS);
    for (int w = 0; w < CG_TEST_WORKERS; w++) /* the 3 partitions spread over the workers */
        assert_true(st.worker_messages[w] > 0);
    if (!strcmp(CG_TEST_SEMANTICS, "exactly-once"))
        assert_true(st.transactions_committed > 0 && st.transactions_aborted == 0);

    /* what the broker holds, read back independently */
    static int seen[N_INPUTS];
    memset(seen, 0, sizeof(seen));
    tk_msg_t *out, *dlq, *coh;
    size_t n_out = tk_read_all(out_topic, &out);
    size_t n_dlq = tk_read_all(dlq_topic, &dlq);
    size_t n_coh = tk_read_all(t2dm_topic, &coh);
    assert_source_order(out, n_out, PARTITIONS);
    assert_source_order(dlq, n_dlq, PARTITIONS);
    assert_source_order(coh, n_coh, 16); /* auto-created: the broker's default partitions */
    /* each mapped input's row is in exactly one place: its cohort's topic or the output topic */
    assert_int_equal(n_coh, n_t2dm);
    assert_int_equal(n_out, N_INPUTS - n_dead - n_t2dm);
    for (size_t j = 0; j < n_coh; j++) {
        int i = input_of(coh[j].value);
        assert_true(i >= 0 && i < N_INPUTS && in_t2dm(i) && !is_junk(i) && !is_unmappable(i));
        assert_non_null(strstr(coh[j].value, "\"cohorts\":[\"t2dm\"]"));
        assert_int_equal(coh[j].key_len, 40);
        seen[i]++;
    }
    tk_msgs_free(coh, n_coh);
    assert_int_equal(n_dlq, n_dead);
    char want[512], hb[128];
    for (size_t j = 0; j < n_out; j++) {
        int i = input_of(out[j].value);
        assert_true(i >= 0 && i < N_INPUTS && !is_junk(i) && !is_unmappable(i) && !in_t2dm(i));
        assert_non_null(strstr(out[j].value, "\"cohorts\":[]"));
        seen[i]++;
        assert_non_null(
            strstr(out[j].value, "\"standard\":\"omop-cdm-5.4\",\"table\":\"measurement\""));
        assert_non_null(strstr(out[j].value, "\"measurement_concept_id\":3004410"));
        /* keyed by the 40-hex-digit pseudonym, never the raw identifier */
        assert_int_equal(out[j].key_len, 40);
        snprintf(want, sizeof(want), "%d", 100000 + i);
        assert_null(strstr(out[j].value, want));
        assert_string_equal(tk_header(&out[j], "cg.spec", hb, sizeof(hb)), "hl7v2-oru-omop");
        assert_string_equal(tk_header(&out[j], "cg.op", hb, sizeof(hb)), "upsert");
        assert_non_null(tk_header(&out[j], "cg.source.offset", hb, sizeof(hb)));
        assert_string_equal(tk_header(&out[j], "cg.source.topic", hb, sizeof(hb)), in_topic);
    }
    for (size_t j = 0; j < n_dlq; j++) {
        assert_non_null(dlq[j].key);
        int i = atoi(dlq[j].key + 1);
        assert_true(i >= 0 && i < N_INPUTS && (is_junk(i) || is_unmappable(i)));
        seen[i]++;
        size_t len = make_input(i, want, sizeof(want));
        assert_int_equal(dlq[j].value_len, len); /* original bytes, untouched */
        if (len)
            assert_memory_equal(dlq[j].value, want, len);
        if (is_junk(i)) {
            assert_string_equal(tk_header(&dlq[j], "cg.error.stage", hb, sizeof(hb)), "decode");
            assert_string_equal(tk_header(&dlq[j], "cg.error.code", hb, sizeof(hb)), "NOT_HL7");
            assert_null(tk_header(&dlq[j], "cg.spec", hb, sizeof(hb))); /* no spec was chosen */
        } else {
            assert_string_equal(tk_header(&dlq[j], "cg.error.stage", hb, sizeof(hb)), "map");
            assert_string_equal(tk_header(&dlq[j], "cg.error.code", hb, sizeof(hb)), "REQUIRED");
            assert_string_equal(tk_header(&dlq[j], "cg.spec", hb, sizeof(hb)), "hl7v2-oru-omop");
            assert_string_equal(tk_header(&dlq[j], "cg.spec.version", hb, sizeof(hb)), "1");
        }
        assert_non_null(tk_header(&dlq[j], "cg.error.reason", hb, sizeof(hb)));
        assert_string_equal(tk_header(&dlq[j], "cg.source.topic", hb, sizeof(hb)), in_topic);
    }
    for (int i = 0; i < N_INPUTS; i++) {
        if (seen[i] != 1)
            fprintf(stderr, "input %d seen %d times\n", i, seen[i]);
        assert_int_equal(seen[i], 1);
    }
    tk_msgs_free(out, n_out);
    tk_msgs_free(dlq, n_dlq);

    /* offsets were committed to the end of the input */
    int64_t end, committed;
    assert_int_equal(tk_group_lag(group, in_topic, PARTITIONS, &end, &committed), 0);
    assert_int_equal(end, N_INPUTS);
    assert_int_equal(committed, N_INPUTS);

    /* and so a second run of the same group has nothing to redo */
    run_gateway(&st);
    assert_int_equal(st.consumed, 0);
}

int main(void)
{
    if (!tk_bootstrap())
        printf("SKIPPED: COHORTGATE_TEST_BOOTSTRAP is not set; tests/scripts/test.sh starts a "
               "broker\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_input_exactly_once),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
