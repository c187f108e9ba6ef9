/* test_kafka_release.c - graded release against the real broker: ADT messages, a third of them
 * with an HIV diagnosis (ICD-10 B20.1), go through `run` with three subscribers: a sponsor at
 * level 3 (dates to the month), a registry at level 5, and one whose agreement has expired.
 * The sponsor never gets an HIV row and the registry gets every one; the two subscribers' person
 * ids and keys differ for every patient and match nothing of the site's; no subscriber record
 * carries the source position; the expired one gets nothing while the others go on; the audit
 * topic's counts add up to the records each subscriber got and the rows withheld.
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
#include "kafka_util.h"

#define N_INPUTS   30
#define PARTITIONS 2

static char in_topic[128], out_topic[128], dlq_topic[128], audit_topic[128], group[128];
static char sponsor_topic[128], registry_topic[128], expired_topic[128];

/* Patient i's admission with one diagnosis: HIV disease for every third, diabetes otherwise. */
static size_t make_input(int i, char *buf, size_t n)
{
    return (size_t)snprintf(
        buf, n,
        "MSH|^~\\&|EPIC|GENHOSP|CG|RES|20240314101500||ADT^A01^ADT_A01|REL%06d|P|2.5.1\r"
        "EVN|A01|20240314082900\r"
        "PID|1||MRN-R-%d^^^GENHOSP^MR||Doe^Jane||19670412|F|||12 Elm St^^Springfield^IL^62701\r"
        "PV1|1|I|4W^402^B^GENHOSP||||||||MED|||||||||V-R-%d|||||||||||||||||||||||||"
        "20240314080000\r"
        "DG1|1||%s^I10||20240314|A\r",
        i, i, i, i % 3 == 0 ? "B20.1^HIV disease" : "E11.9^Type 2 diabetes");
}

static int setup(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        return 0;
    struct {
        char *name;
        const char *prefix;
    } t[] = {{in_topic, "cg-it-rel-raw"},          {out_topic, "cg-it-rel-records"},
             {dlq_topic, "cg-it-rel-dlq"},         {audit_topic, "cg-it-rel-audit"},
             {sponsor_topic, "cg-it-rel-sponsor"}, {registry_topic, "cg-it-rel-registry"},
             {expired_topic, "cg-it-rel-expired"}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        tk_unique_name(t[i].name, 128, t[i].prefix);
        if (tk_create_topic(t[i].name, PARTITIONS))
            return -1;
    }
    tk_unique_name(group, sizeof(group), "cg-it-rel-group");
    return tk_produce_each(in_topic, N_INPUTS, make_input);
}

static json_t *value_of(const tk_msg_t *m)
{
    json_error_t je;
    json_t *v = json_loads(m->value, 0, &je);
    if (!v)
        fail_msg("not JSON: %s: %s", je.text, m->value);
    return v;
}

static const char *row_str(json_t *v, const char *col)
{
    return json_string_value(json_object_get(json_object_get(v, "row"), col));
}

static json_int_t row_int(json_t *v, const char *col)
{
    return json_integer_value(json_object_get(json_object_get(v, "row"), col));
}

/* Per table, how many records of topic; the HIV rows; every person_id seen. */
typedef struct tally {
    size_t n, conditions, hiv, persons;
    json_int_t person_ids[N_INPUTS * 8];
    size_t n_ids;
} tally_t;

static void tally(const tk_msg_t *m, size_t n, tally_t *t, const char *subscriber, int max_level)
{
    memset(t, 0, sizeof(*t));
    char hb[256];
    for (size_t i = 0; i < n; i++) {
        json_t *v = value_of(&m[i]);
        const char *table = json_string_value(json_object_get(v, "table"));
        t->n++;
        if (!strcmp(table, "condition_occurrence")) {
            t->conditions++;
            const char *code = row_str(v, "condition_source_value");
            if (code && !strncmp(code, "B20", 3))
                t->hiv++;
        }
        if (!strcmp(table, "person"))
            t->persons++;
        json_int_t pid = row_int(v, "person_id");
        if (pid && t->n_ids < sizeof(t->person_ids) / sizeof(t->person_ids[0]))
            t->person_ids[t->n_ids++] = pid;
        /* released: the policy and level in the headers, no source position anywhere */
        assert_string_equal(tk_header(&m[i], "cg.subscriber", hb, sizeof(hb)), subscriber);
        assert_non_null(tk_header(&m[i], "cg.policy", hb, sizeof(hb)));
        int level = atoi(tk_header(&m[i], "cg.level", hb, sizeof(hb)));
        assert_true(level >= 1 && level <= max_level);
        assert_null(tk_header(&m[i], "cg.source.offset", hb, sizeof(hb)));
        assert_null(tk_header(&m[i], "cg.source.topic", hb, sizeof(hb)));
        json_t *src = json_object_get(v, "source");
        assert_null(json_object_get(src, "offset"));
        assert_null(json_object_get(src, "topic"));
        /* nothing the site's identifiers are made of */
        assert_null(strstr(m[i].value, "MRN-R-"));
        assert_null(strstr(m[i].value, "REL0"));
        assert_null(strstr(m[i].value, "Elm St"));
        json_decref(v);
    }
}

static int shares_id(const tally_t *a, const tally_t *b)
{
    for (size_t i = 0; i < a->n_ids; i++)
        for (size_t k = 0; k < b->n_ids; k++)
            if (a->person_ids[i] == b->person_ids[k])
                return 1;
    return 0;
}

static void test_release_to_three_subscribers(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    char text[4096];
    snprintf(
        text, sizeof(text),
        "{\"group_id\":\"%s\",\"inputs\":[{\"topic\":\"%s\"}],"
        "\"output\":{\"topic\":\"%s\",\"dead_letter_topic\":\"%s\"},"
        "\"mapping\":{\"specs\":\"" CG_SOURCE_DIR "/specs\"},"
        "\"pseudonym\":{\"key_file\":\"" CG_SOURCE_DIR "/tests/golden/key\"},"
        "\"delivery\":{\"commit_interval_ms\":100},"
        "\"release\":{\"audit_topic\":\"%s\",\"audit_interval_ms\":200,\"subscribers\":["
        "{\"name\":\"sponsor\",\"topic\":\"%s\",\"agreement\":\"DUA-S\",\"expires\":\"2999-01-01\","
        "\"max_level\":3,\"levels\":{\"3\":\"generalize\"}},"
        "{\"name\":\"registry\",\"topic\":\"%s\",\"agreement\":\"DUA-R\",\"expires\":\"2999-01-"
        "01\","
        "\"max_level\":5},"
        "{\"name\":\"expired\",\"topic\":\"%s\",\"agreement\":\"DUA-X\",\"expires\":\"2020-01-01\","
        "\"max_level\":5}]},"
        "\"log\":{\"level\":\"warn\"},\"metrics\":{\"listen\":\"off\"},"
        "\"kafka\":{\"bootstrap.servers\":\"%s\",\"session.timeout.ms\":6000}}",
        group, in_topic, out_topic, dlq_topic, audit_topic, sponsor_topic, registry_topic,
        expired_topic, tk_bootstrap());
    cg_error_t cerr;
    cg_config_t *cfg = cg_config_load_string(text, "<test>", NULL, &cerr);
    if (!cfg)
        fail_msg("%s:%d:%d: %s", cerr.file, cerr.line, cerr.column, cerr.text);
    char errstr[512];
    cg_gateway_opts_t o = {.idle_exit_ms = 3000};
    cg_gateway_t *gw = cg_gateway_new(cfg, &o, errstr, sizeof(errstr));
    if (!gw)
        fail_msg("new: %s", errstr);
    if (cg_gateway_run(gw, errstr, sizeof(errstr)) != CG_OK)
        fail_msg("run: %s", errstr);
    cg_gateway_destroy(gw);
    cg_config_destroy(cfg);

    tk_msg_t *recs, *sp, *rg, *ex, *au;
    size_t n_recs = tk_read_all(out_topic, &recs);
    size_t n_sp = tk_read_all(sponsor_topic, &sp);
    size_t n_rg = tk_read_all(registry_topic, &rg);
    size_t n_ex = tk_read_all(expired_topic, &ex);
    size_t n_au = tk_read_all(audit_topic, &au);
    tally_t tsp, trg;
    tally(sp, n_sp, &tsp, "sponsor", 3);
    tally(rg, n_rg, &trg, "registry", 5);
    /* the registry gets every row the site publishes, HIV diagnoses too */
    assert_int_equal(n_rg, n_recs);
    assert_int_equal(trg.persons, N_INPUTS);
    assert_int_equal(trg.conditions, N_INPUTS);
    assert_int_equal(trg.hiv, N_INPUTS / 3);
    /* the sponsor: the same rows but the HIV diagnoses, which never arrive */
    assert_int_equal(tsp.hiv, 0);
    assert_int_equal(tsp.conditions, N_INPUTS - N_INPUTS / 3);
    assert_int_equal(n_sp, n_recs - N_INPUTS / 3);
    /* its dates are months; the registry's are days */
    for (size_t i = 0; i < n_sp; i++) {
        json_t *v = value_of(&sp[i]);
        const char *d = row_str(v, "condition_start_date");
        if (d)
            assert_string_equal(d, "2024-03-01");
        json_decref(v);
    }
    /* no person id in common: neither with each other nor with the site's records */
    tally_t tsite;
    memset(&tsite, 0, sizeof(tsite));
    for (size_t i = 0; i < n_recs; i++) {
        json_t *v = value_of(&recs[i]);
        json_int_t pid = row_int(v, "person_id");
        if (pid && tsite.n_ids < sizeof(tsite.person_ids) / sizeof(tsite.person_ids[0]))
            tsite.person_ids[tsite.n_ids++] = pid;
        json_decref(v);
    }
    assert_true(tsp.n_ids > 0 && trg.n_ids > 0 && tsite.n_ids > 0);
    assert_false(shares_id(&tsp, &trg));
    assert_false(shares_id(&tsp, &tsite));
    assert_false(shares_id(&trg, &tsite));
    for (size_t i = 0; i < n_sp; i++) /* keys too */
        for (size_t k = 0; k < n_rg; k++)
            assert_false(sp[i].key_len == rg[k].key_len &&
                         !memcmp(sp[i].key, rg[k].key, sp[i].key_len));
    /* the expired agreement: nothing, and the others went on */
    assert_int_equal(n_ex, 0);
    /* the audit: per subscriber, released adds up to its records, withheld to the rest */
    json_int_t released[3] = {0}, above[3] = {0}, expired[3] = {0};
    const char *names[3] = {"sponsor", "registry", "expired"};
    char hb[256];
    for (size_t i = 0; i < n_au; i++) {
        json_t *v = value_of(&au[i]);
        const char *who = json_string_value(json_object_get(v, "subscriber"));
        assert_string_equal(tk_header(&au[i], "cg.subscriber", hb, sizeof(hb)), who);
        json_t *w = json_object_get(v, "withheld");
        for (int s = 0; s < 3; s++)
            if (!strcmp(who, names[s])) {
                released[s] += json_integer_value(json_object_get(v, "released_total"));
                above[s] += json_integer_value(json_object_get(w, "above_level"));
                expired[s] += json_integer_value(json_object_get(w, "agreement_expired"));
            }
        json_decref(v);
    }
    assert_int_equal(released[0], (json_int_t)n_sp);
    assert_int_equal(above[0], N_INPUTS / 3);
    assert_int_equal(released[1], (json_int_t)n_rg);
    assert_int_equal(above[1], 0);
    assert_int_equal(released[2], 0);
    assert_int_equal(expired[2], (json_int_t)n_recs);
    printf("release: %zu site records; sponsor %zu, registry %zu, expired %zu; %zu audit "
           "records\n",
           n_recs, n_sp, n_rg, n_ex, n_au);
    tk_msgs_free(recs, n_recs);
    tk_msgs_free(sp, n_sp);
    tk_msgs_free(rg, n_rg);
    tk_msgs_free(ex, n_ex);
    tk_msgs_free(au, n_au);
}

int main(void)
{
    if (!tk_bootstrap())
        printf("SKIPPED: COHORTGATE_TEST_BOOTSTRAP is not set; tests/scripts/test.sh starts a "
               "broker\n");
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_release_to_three_subscribers)};
    return cmocka_run_group_tests(tests, setup, NULL);
}
