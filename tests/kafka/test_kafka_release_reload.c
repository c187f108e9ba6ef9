/* test_kafka_release_reload.c - SIGHUP reloads graded-release policies, against the real broker.
 * A sponsor first at level 5 gets HIV diagnoses; after its config says level 3 and a reload, the
 * next inputs' HIV diagnoses never reach it and its records carry the new policy version; a
 * reload with a policy check -c refuses, or with a subscriber renamed, fails and the running
 * policy goes on; the audit tells the two versions apart and adds up. The gateway runs on its
 * own thread, as the daemon's main loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cg_config.h"
#include "cg_gateway.h"
#include "gw_thread.h"
#include "kafka_util.h"

#define BATCH 6 /* inputs a batch; every third an HIV diagnosis */

static char in_topic[128], out_topic[128], dlq_topic[128], audit_topic[128], sponsor_topic[128],
    group[128], dir[256], path[300];
static int base; /* the first input number of the batch being produced */

static size_t make_input(int k, char *buf, size_t n)
{
    int i = base + k;
    return (size_t)snprintf(
        buf, n,
        "MSH|^~\\&|EPIC|GENHOSP|CG|RES|20240314101500||ADT^A01^ADT_A01|RR%06d|P|2.5.1\r"
        "PID|1||MRN-RR-%d^^^GENHOSP^MR||Doe^Jane||19670412|F\r"
        "PV1|1|I|4W^402^B^GENHOSP||||||||MED|||||||||V-RR-%d\r"
        "DG1|1||%s^I10||20240314|A\r",
        i, i, i, i % 3 == 0 ? "B20.1^HIV disease" : "E11.9^Type 2 diabetes");
}

/* The config file, the sponsor's policy as given (its JSON members after name and topic). */
static void write_config(const char *sponsor_name, const char *policy)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"group_id\":\"%s\",\"inputs\":[{\"topic\":\"%s\"}],"
            "\"output\":{\"topic\":\"%s\",\"dead_letter_topic\":\"%s\"},"
            "\"mapping\":{\"specs\":\"" CG_SOURCE_DIR "/specs\"},"
            "\"pseudonym\":{\"key_file\":\"" CG_SOURCE_DIR "/tests/golden/key\"},"
            "\"delivery\":{\"commit_interval_ms\":100},"
            "\"release\":{\"audit_topic\":\"%s\",\"audit_interval_ms\":200,\"subscribers\":["
            "{\"name\":\"%s\",\"topic\":\"%s\",\"agreement\":\"DUA-S\",\"expires\":\"2999-01-01\","
            "%s}]},"
            "\"log\":{\"level\":\"warn\"},\"metrics\":{\"listen\":\"off\"},"
            "\"kafka\":{\"bootstrap.servers\":\"%s\"}}\n",
            group, in_topic, out_topic, dlq_topic, audit_topic, sponsor_name, sponsor_topic, policy,
            tk_bootstrap());
    fclose(f);
}

/* The sponsor's condition rows so far: all, HIV ones, and the policy versions they came under */
typedef struct seen {
    size_t conditions, hiv;
    char versions[4][64];
    size_t n_versions, hiv_by_version[4];
} seen_t;

static void look(seen_t *s)
{
    memset(s, 0, sizeof(*s));
    tk_msg_t *m;
    size_t n = tk_read_all(sponsor_topic, &m);
    char hb[128];
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_loads(m[i].value, 0, NULL);
        assert_non_null(v);
        if (!strcmp(json_string_value(json_object_get(v, "table")), "condition_occurrence")) {
            const char *ver = tk_header(&m[i], "cg.policy", hb, sizeof(hb));
            assert_non_null(ver);
            size_t k = 0;
            while (k < s->n_versions && strcmp(s->versions[k], ver))
                k++;
            if (k == s->n_versions) {
                assert_true(k < 4);
                snprintf(s->versions[s->n_versions++], 64, "%s", ver);
            }
            const char *code = json_string_value(
                json_object_get(json_object_get(v, "row"), "condition_source_value"));
            s->conditions++;
            if (code && !strncmp(code, "B20", 3)) {
                s->hiv++;
                s->hiv_by_version[k]++;
            }
        }
        json_decref(v);
    }
    tk_msgs_free(m, n);
}

/* Produces the next batch and waits until the sponsor holds want condition rows. */
static void batch(size_t want, seen_t *s)
{
    assert_int_equal(tk_produce_each(in_topic, BATCH, make_input), 0);
    base += BATCH;
    for (int tries = 0; tries < 60; tries++) {
        look(s);
        if (s->conditions >= want)
            break;
        sleep(1);
    }
    assert_int_equal(s->conditions, want);
}

static void test_reload_policies(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    struct {
        char *name;
        const char *prefix;
    } t[] = {{in_topic, "cg-it-relre-raw"},
             {out_topic, "cg-it-relre-records"},
             {dlq_topic, "cg-it-relre-dlq"},
             {audit_topic, "cg-it-relre-audit"},
             {sponsor_topic, "cg-it-relre-sponsor"}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        tk_unique_name(t[i].name, 128, t[i].prefix);
        assert_int_equal(tk_create_topic(t[i].name, 1), 0);
    }
    tk_unique_name(group, sizeof(group), "cg-it-relre-group");
    snprintf(dir, sizeof(dir), "/tmp/cg-relre-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/run.json", dir);
    write_config("sponsor", "\"max_level\":5");
    cg_error_t err;
    cg_config_t *cfg = cg_config_load_file(path, &err);
    if (!cfg)
        fail_msg("%s:%d:%d: %s", err.file, err.line, err.column, err.text);
    gw_thread_t c = {0};
    c.gw = cg_gateway_new(cfg, NULL, c.err, sizeof(c.err));
    if (!c.gw)
        fail_msg("new: %s", c.err);
    gw_thread_start(&c);

    seen_t s;
    /* level 5: every diagnosis, HIV too */
    batch(BATCH, &s);
    assert_int_equal(s.hiv, BATCH / 3);
    assert_int_equal(s.n_versions, 1);
    char v5[64];
    snprintf(v5, sizeof(v5), "%s", s.versions[0]);

    /* level 3 after a reload: the next batch's HIV diagnoses never arrive, under a new version */
    write_config("sponsor", "\"max_level\":3,\"levels\":{\"3\":\"generalize\"}");
    gw_thread_reload(&c, 0);
    batch(BATCH + (BATCH - BATCH / 3), &s);
    assert_int_equal(s.hiv, BATCH / 3); /* the first batch's only */
    assert_int_equal(s.n_versions, 2);
    for (size_t k = 0; k < s.n_versions; k++)
        if (strcmp(s.versions[k], v5))
            assert_int_equal(s.hiv_by_version[k], 0);

    /* a policy check -c refuses (keep above max_level), and a renamed subscriber: both fail,
     * and level 3 goes on */
    write_config("sponsor", "\"max_level\":3,\"levels\":{\"4\":\"keep\"}");
    gw_thread_reload(&c, 1);
    write_config("sponsor-2", "\"max_level\":5");
    gw_thread_reload(&c, 2);
    batch(2 * (BATCH - BATCH / 3) + BATCH, &s);
    assert_int_equal(s.hiv, BATCH / 3);
    assert_int_equal(s.n_versions, 2);

    gw_thread_stop(&c);
    assert_int_equal(c.rc, CG_OK);
    cg_gateway_destroy(c.gw);
    cg_config_destroy(cfg);

    /* the audit: each version's records counted under it, adding up to what the sponsor got */
    tk_msg_t *au, *sp;
    size_t n_au = tk_read_all(audit_topic, &au), n_sp = tk_read_all(sponsor_topic, &sp);
    json_int_t released = 0, above = 0;
    char seen_v[4][64];
    size_t versions_seen = 0;
    char hb[128];
    for (size_t i = 0; i < n_au; i++) {
        json_t *v = json_loads(au[i].value, 0, NULL);
        assert_non_null(v);
        released += json_integer_value(json_object_get(v, "released_total"));
        above += json_integer_value(json_object_get(json_object_get(v, "withheld"), "above_level"));
        const char *ver = json_string_value(json_object_get(v, "policy"));
        assert_string_equal(tk_header(&au[i], "cg.policy", hb, sizeof(hb)), ver);
        size_t k = 0;
        while (k < versions_seen && strcmp(seen_v[k], ver))
            k++;
        if (k == versions_seen && versions_seen < 4)
            snprintf(seen_v[versions_seen++], 64, "%s", ver);
        /* what level 5 released is audited under its own version */
        if (!strcmp(ver, v5))
            assert_int_equal(
                json_integer_value(json_object_get(json_object_get(v, "withheld"), "above_level")),
                0);
        json_decref(v);
    }
    assert_int_equal(released, (json_int_t)n_sp);
    assert_int_equal(above, 2 * (BATCH / 3));
    assert_int_equal(versions_seen, 2);
    printf("release reload: sponsor %zu records, %zu audit records\n", n_sp, n_au);
    tk_msgs_free(au, n_au);
    tk_msgs_free(sp, n_sp);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    if (!tk_bootstrap())
        printf("SKIPPED: COHORTGATE_TEST_BOOTSTRAP is not set; tests/scripts/test.sh starts a "
               "broker\n");
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_reload_policies)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
