/* test_kafka_reload.c - SIGHUP's path against the real broker: a reload with a broken spec keeps
 * the running specs mapping, a reload with a good one switches to it, and stop drains and
 * commits. The gateway runs on its own thread, as the daemon's main loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cg_config.h"
#include "cg_gateway.h"
#include "gw_thread.h"
#include "kafka_util.h"

static char in_topic[128], out_topic[128], dlq_topic[128], group[128], dir[256], spec[300];

static void write_spec(int version, int broken)
{
    /* the shipped ORU spec with another version number, or a spec that does not compile */
    char src[512];
    snprintf(src, sizeof(src), "%s/specs/hl7v2-oru-omop.json", CG_SOURCE_DIR);
    FILE *in = fopen(src, "rb");
    assert_non_null(in);
    static char text[65536];
    size_t n = fread(text, 1, sizeof(text) - 1, in);
    fclose(in);
    text[n] = '\0';
    char *v = strstr(text, "\"version\": 1");
    assert_non_null(v);
    v[11] = (char)('0' + version);
    FILE *out = fopen(spec, "wb");
    assert_non_null(out);
    fputs(broken ? "{\"spec\": \"hl7v2-oru-omop\", \"version\": " : text, out);
    fclose(out);
}

static void produce_one(int i)
{
    char msg[512], key[16];
    int len = snprintf(msg, sizeof(msg),
                       "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|R%03d|P|2.5.1\r"
                       "PID|1||%d^^^HOSP^MR\rOBX|1|NM|4548-4^HbA1c^LN||6.1|%%|||||F|||20240314\r",
                       i, 500 + i);
    int kl = snprintf(key, sizeof(key), "k%d", i);
    rd_kafka_t *p = tk_producer();
    assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(in_topic), RD_KAFKA_V_KEY(key, kl),
                                       RD_KAFKA_V_VALUE(msg, len),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(p, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(p);
}

/* Waits until the output topic holds n records; returns the last one's value (malloc'ed). */
static char *wait_for(size_t n)
{
    for (int tries = 0; tries < 60; tries++) {
        tk_msg_t *m;
        size_t got = tk_read_all(out_topic, &m);
        if (got >= n) {
            assert_int_equal(got, n);
            char *last = NULL;
            for (size_t i = 0; i < got; i++) /* the highest offset across partitions */
                if (strstr(m[i].value, "\"message_id\":\"R")) {
                    char want[32];
                    snprintf(want, sizeof(want), "\"message_id\":\"R%03zu\"", n);
                    if (strstr(m[i].value, want))
                        last = strdup(m[i].value);
                }
            tk_msgs_free(m, got);
            assert_non_null(last);
            return last;
        }
        tk_msgs_free(m, got);
        sleep(1);
    }
    fail_msg("the output topic did not reach %zu record(s)", n);
    return NULL;
}

static void test_reload_keeps_old_specs_on_error(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    tk_unique_name(in_topic, sizeof(in_topic), "cg-it-reload-raw");
    tk_unique_name(out_topic, sizeof(out_topic), "cg-it-reload-out");
    tk_unique_name(dlq_topic, sizeof(dlq_topic), "cg-it-reload-dlq");
    tk_unique_name(group, sizeof(group), "cg-it-reload-group");
    assert_int_equal(tk_create_topic(in_topic, 1), 0);
    assert_int_equal(tk_create_topic(out_topic, 1), 0);
    assert_int_equal(tk_create_topic(dlq_topic, 1), 0);
    snprintf(dir, sizeof(dir), "/tmp/cg-reload-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(spec, sizeof(spec), "%s/oru.json", dir);
    write_spec(1, 0);

    char text[2048];
    snprintf(text, sizeof(text),
             "{\"group_id\":\"%s\",\"inputs\":[{\"topic\":\"%s\"}],"
             "\"output\":{\"topic\":\"%s\",\"dead_letter_topic\":\"%s\"},"
             "\"mapping\":{\"specs\":\"%s\",\"vocab\":\"" CG_SOURCE_DIR "/specs/vocab\"},"
             "\"pseudonym\":{\"key_file\":\"" CG_SOURCE_DIR "/tests/golden/key\","
             "\"message_id\":\"plain\"},"
             "\"delivery\":{\"commit_interval_ms\":100},\"log\":{\"level\":\"warn\"},"
             "\"kafka\":{\"bootstrap.servers\":\"%s\"}}",
             group, in_topic, out_topic, dlq_topic, dir, tk_bootstrap());
    cg_error_t err;
    cg_config_t *cfg = cg_config_load_string(text, "<test>", NULL, &err);
    assert_non_null(cfg);
    gw_thread_t c = {0};
    c.gw = cg_gateway_new(cfg, NULL, c.err, sizeof(c.err));
    assert_non_null(c.gw);
    gw_thread_start(&c);

    produce_one(1);
    char *v = wait_for(1);
    assert_non_null(strstr(v, "\"spec_version\":1"));
    free(v);

    /* a broken spec: the reload fails and version 1 keeps mapping */
    write_spec(1, 1);
    gw_thread_reload(&c, 1);
    produce_one(2);
    v = wait_for(2);
    assert_non_null(strstr(v, "\"spec_version\":1"));
    free(v);

    /* a good spec: the reload switches to version 2 */
    write_spec(2, 0);
    gw_thread_reload(&c, 1);
    produce_one(3);
    v = wait_for(3);
    assert_non_null(strstr(v, "\"spec_version\":2"));
    free(v);

    /* stop drains and commits, as SIGTERM does */
    gw_thread_stop(&c);
    assert_int_equal(c.rc, CG_OK);
    cg_gateway_stats_t st;
    cg_gateway_get_stats(c.gw, &st);
    assert_int_equal(st.consumed, 3);
    assert_int_equal(st.dead_lettered, 0);
    cg_gateway_destroy(c.gw);
    cg_config_destroy(cfg);
    int64_t end, committed;
    assert_int_equal(tk_group_lag(group, in_topic, 1, &end, &committed), 0);
    assert_int_equal(end, 3);
    assert_int_equal(committed, 3);
    unlink(spec);
    rmdir(dir);
}

int main(void)
{
    if (!tk_bootstrap())
        printf("SKIPPED: COHORTGATE_TEST_BOOTSTRAP is not set; tests/scripts/test.sh starts a "
               "broker\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reload_keeps_old_specs_on_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
