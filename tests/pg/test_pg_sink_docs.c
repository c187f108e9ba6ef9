/* test_pg_sink_docs.c - a C-CDA document replaced by a new version (relatedDocument RPLC),
 * through the real gateway and the real sink: `cohortgate run` maps the documents from a raw
 * topic into records (labels kafka and pg; exit 77 without a broker and a server), `cohortgate
 * sink` applies them. tests/golden/lifecycle_ccda_replace: version 1 states three problems
 * (E11.9, I10, J45.909); version 2 restates PRB-1 as E11.65, drops I10 and restates the asthma
 * under a new entry id.
 *
 *   later:      version 1 loaded, then version 2 in a later run: the patient holds version 2's
 *               problems only; a second patient whose document reuses version 1's id (senders
 *               reuse document ids) keeps all of theirs; cg_row_doc names version 2 for the
 *               patient's rows; a second sink pass changes nothing.
 *   same batch: both versions in one transaction of the sink, with bigint ids: the same end.
 *   out of order: version 2 before version 1: version 1's records, which came after its
 *               retraction, are left out: the patient ends as in order (version 2's problems),
 *               and the second patient's document of the same id still loads.
 *   released:   through graded release into a subscriber's database (pg.subscriber): the same
 *               end, with the subscriber's pseudonyms of the document ids.
 *
 * An order cancelled after its results (tests/golden/lifecycle_order_cancel_results): an ORU
 * with the results of two orders, then the placer's ORM with ORC-1 CA for the first, repeating
 * none of its results. The cancel's cohortgate.order_retraction retracts the first order's two
 * results, whose rows the sink kept as the order's ("order:ID" in cg.document); the potassium
 * of the other order stays. In a later run, in the same batch (bigint ids), and released to a
 * subscriber (the rows' meta order_id and the retraction re-keyed alike, and the cancel an OC,
 * the filler's). A cancel request (CA) may be refused, so the order's results sent again come
 * back; after an OC they are left out.
 */
#include "pg_test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#ifndef CG_GATEWAY_BIN
#error "CG_GATEWAY_BIN must name the cohortgate binary"
#endif
#ifndef CG_SOURCE_DIR
#error "CG_SOURCE_DIR must name the source tree"
#endif

#define DOCS CG_SOURCE_DIR "/tests/golden/lifecycle_ccda_replace"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strdup(buf);
}

/* The subscriber of the released case: level 4 (a replaced document's id is an identifier),
 * its topic the sink's. */
#define SUBSCRIBER                                                                                 \
    "{\"name\": \"registry\", \"topic\": \"%s\", \"agreement\": \"D1\", \"expires\": "             \
    "\"2999-01-01\", \"max_level\": 4}"

/* The raw topic of r (name.raw), and `cohortgate run` over it into r->topic (released: to the
 * subscriber, whose topic is r->topic) to its end. */
static void gateway_run(const pt_run_t *r, int released)
{
    char cfg[400], log[400];
    snprintf(cfg, sizeof(cfg), "%s/run.json", r->dir);
    snprintf(log, sizeof(log), "%s/run.log", r->dir);
    FILE *f = fopen(cfg, "w");
    assert_non_null(f);
    char release[600] = "";
    if (released)
        snprintf(release, sizeof(release),
                 "\"release\": {\"audit_topic\": \"%s.audit\", \"subscribers\": [" SUBSCRIBER
                 "]}, ",
                 r->name, r->topic);
    fprintf(f,
            "{\"group_id\": \"%s-run\", \"inputs\": [{\"topic\": \"%s.raw\", \"format\": "
            "\"auto\"}], \"output\": {\"topic\": \"%s%s\", \"dead_letter_topic\": \"%s.dlq\"}, "
            "\"mapping\": {\"specs\": \"%s/specs\"}, \"pseudonym\": {\"key_file\": "
            "\"%s/tests/golden/key\"}, %s\"metrics\": {\"listen\": \"off\"}, \"log\": "
            "{\"level\": \"warn\"}, \"kafka\": {\"bootstrap.servers\": \"%s\"}}\n",
            r->name, r->name, r->topic, released ? ".all" : "", r->name, CG_SOURCE_DIR,
            CG_SOURCE_DIR, release, tk_bootstrap());
    fclose(f);
    pt_sh("%s run -c '%s' --idle-exit 3000 --no-report > '%s' 2>&1 || { tail -5 '%s' >&2; "
          "exit 1; }",
          CG_GATEWAY_BIN, cfg, log, log);
}

/* Documents to the raw topic, each keyed by its file name. */
static void produce_docs(const pt_run_t *r, const char *const *paths, size_t n)
{
    char raw[200];
    snprintf(raw, sizeof(raw), "%s.raw", r->name);
    rd_kafka_t *p = tk_producer();
    for (size_t i = 0; i < n; i++) {
        char *doc = slurp(paths[i]);
        pt_produce(p, raw, strrchr(paths[i], '/') + 1, doc);
        free(doc);
    }
    pt_producer_close(p);
}

static void sink_pass(const pt_run_t *r)
{
    char log[400];
    snprintf(log, sizeof(log), "%s/sink.log", r->dir);
    assert_int_equal(pt_sink(r->config, NULL, 1500, log), 0);
}

/* Version 1 with the patient's id changed: another patient's document with the same id. */
static void other_patient(const pt_run_t *r, char *out, size_t n)
{
    snprintf(out, n, "%s/other.xml", r->dir);
    pt_sh("sed 's/extension=\"MRN-4711\"/extension=\"MRN-4712\"/' '%s/1-original.xml' > '%s'", DOCS,
          out);
}

static long long conditions(const pt_run_t *r, const char *mrn_person_filter)
{
    return pt_q_int("SELECT count(*) FROM %s.condition_occurrence WHERE %s", r->schema,
                    mrn_person_filter);
}

/* The end state: the replaced patient (found by version 2's E11.65) holds version 2's problems,
 * the other patient (with_other) version 1's. */
static void check_end(const pt_run_t *r, int with_other)
{
    const char *s = r->schema;
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_rejects", s), 0);
    /* the patient of version 2: its problems only */
    char q[1200], *sources;
    snprintf(q, sizeof(q),
             "SELECT string_agg(condition_source_value, ',' ORDER BY condition_source_value) "
             "FROM %s.condition_occurrence WHERE person_id IN (SELECT c.person_id FROM "
             "%s.condition_occurrence c WHERE c.condition_source_value = 'E11.65')",
             s, s);
    sources = pt_q_text(q);
    assert_string_equal(sources, "E11.65,J45.909");
    free(sources);
    if (with_other) { /* the other patient, whose document reuses version 1's id: untouched */
        snprintf(q, sizeof(q),
                 "SELECT string_agg(condition_source_value, ',' ORDER BY condition_source_value) "
                 "FROM %s.condition_occurrence WHERE person_id NOT IN (SELECT c.person_id FROM "
                 "%s.condition_occurrence c WHERE c.condition_source_value = 'E11.65')",
                 s, s);
        sources = pt_q_text(q);
        assert_string_equal(sources, "E11.9,I10,J45.909");
        free(sources);
    }
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.person", s), with_other ? 2 : 1);
    /* every person keeps one period, holding their rows */
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.observation_period", s), with_other ? 2 : 1);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.condition_occurrence x WHERE NOT EXISTS "
                              "(SELECT 1 FROM %s.observation_period o WHERE o.person_id = "
                              "x.person_id AND x.condition_start_date BETWEEN "
                              "o.observation_period_start_date AND o.observation_period_end_date)",
                              s, s),
                     0);
    /* which document stated each row: version 2 for the patient's two problems and person,
     * version 1 for the other's (the same document id, another person) */
    assert_int_equal(pt_q_int("SELECT count(DISTINCT doc) FROM %s.cg_row_doc", s),
                     with_other ? 2 : 1);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_row_doc WHERE table_name = "
                              "'condition_occurrence'",
                              s),
                     with_other ? 5 : 2);
}

/* A case: its names, topic and sink config (transactions of txn_max, commit_ms; pg_more and
 * top_more as pt_write_config takes them), and its schema made by --init. */
static void case_new(pt_run_t *r, const char *prefix, int txn_max, int commit_ms,
                     const char *pg_more, const char *top_more)
{
    pt_run_new(r, prefix, "records", 1);
    pt_write_config(r, r->config, txn_max, commit_ms, pg_more, top_more);
    char log[400];
    snprintf(log, sizeof(log), "%s/init.log", r->dir);
    assert_int_equal(pt_sink(r->config, "--init", 0, log), 0);
}

/* A case whose sink is the subscriber's (pg.subscriber), its database made by --init. The
 * subscriber's topic is the case's: its name first, then the config. */
static void subscriber_case_new(pt_run_t *r, const char *prefix)
{
    pt_run_new(r, prefix, "records", 1);
    char top[700];
    snprintf(top, sizeof(top), " \"release\": {\"subscribers\": [" SUBSCRIBER "]},\n", r->topic);
    pt_write_config(r, r->config, 50, 100, ", \"subscriber\": \"registry\"", top);
    char log[400];
    snprintf(log, sizeof(log), "%s/init.log", r->dir);
    assert_int_equal(pt_sink(r->config, "--init", 0, log), 0);
}

/* Version 1 of both patients' documents through the gateway (released: to the subscriber) and
 * the sink, then version 2 of the first: the end state. */
static void load_versions(const pt_run_t *r, int released)
{
    char log[400], other[400];
    other_patient(r, other, sizeof(other));
    const char *v1[] = {DOCS "/1-original.xml", other};
    produce_docs(r, v1, 2);
    gateway_run(r, released);
    sink_pass(r);
    /* version 1 of both: three problems each; per patient the person and three problems
     * stated by a document */
    assert_int_equal(conditions(r, "true"), 6);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_row_doc", r->schema), 8);
    /* the two documents have one id: only the person tells their rows apart */
    assert_int_equal(pt_q_int("SELECT count(DISTINCT doc) FROM %s.cg_row_doc", r->schema), 1);
    const char *v2[] = {DOCS "/2-replacement.xml"};
    produce_docs(r, v2, 1);
    gateway_run(r, released);
    sink_pass(r);
    check_end(r, 1);
    snprintf(log, sizeof(log), "%s/sink.log", r->dir);
    assert_int_equal(tk_file_count(log, "sink.document_retracted"), 1);
}

static void test_later(void **state)
{
    (void)state;
    pt_run_t r;
    case_new(&r, "cg-it-docs", 50, 100, "", "");
    load_versions(&r, 0);
    /* again over the same topic: nothing changes */
    pt_q_exec("DELETE FROM %s.cg_offsets", r.schema);
    sink_pass(&r);
    check_end(&r, 1);
    pt_run_end(&r);
}

/* Both versions in one transaction; with bigint ids (no id map between rows and cg_row_doc). */
static void test_same_batch(void **state)
{
    (void)state;
    pt_run_t r;
    case_new(&r, "cg-it-docs1", 500, 5000, ", \"id_type\": \"bigint\"", "");
    const char *both[] = {DOCS "/1-original.xml", DOCS "/2-replacement.xml"};
    produce_docs(&r, both, 2);
    gateway_run(&r, 0);
    sink_pass(&r);
    check_end(&r, 0);
    pt_run_end(&r);
}

/* The doc cg_row_doc names for the row of table whose column is value (integer ids). */
static char *doc_of(const pt_run_t *r, const char *table, const char *column, const char *value)
{
    char q[900];
    snprintf(q, sizeof(q),
             "SELECT string_agg(d.doc, ',') FROM %s.cg_row_doc d JOIN %s.cg_id_map m ON "
             "m.source_id = d.row_id JOIN %s.%s x ON x.%s_id = m.id WHERE d.table_name = '%s' "
             "AND x.%s = '%s'",
             r->schema, r->schema, r->schema, table, table, table, column, value);
    return pt_q_text(q);
}

/* Version 2 before version 1 (a replay, another topic): version 2's retraction of version 1 is
 * remembered for the patient (cg_doc_retracted), so version 1's records, coming after it, are
 * left out: none of its rows (I10, the old asthma entry, E11.9) comes in, and the rows and the
 * documents that stated them stay version 2's. */
static void test_out_of_order(void **state)
{
    (void)state;
    pt_run_t r;
    case_new(&r, "cg-it-docs3", 50, 100, "", "");
    const char *v2[] = {DOCS "/2-replacement.xml"};
    produce_docs(&r, v2, 1);
    gateway_run(&r, 0);
    sink_pass(&r);
    char other[400];
    other_patient(&r, other, sizeof(other));
    const char *v1[] = {DOCS "/1-original.xml", other};
    produce_docs(&r, v1, 2);
    gateway_run(&r, 0);
    sink_pass(&r);
    check_end(&r, 1); /* as when they come in order */
    /* E11.65 stated by version 2, the other patient's E11.9 by their document (version 1's id) */
    char *e11 = doc_of(&r, "condition_occurrence", "condition_source_value", "E11.65");
    char *v1_doc = doc_of(&r, "condition_occurrence", "condition_source_value", "E11.9");
    assert_true(*e11 && *v1_doc);
    assert_string_not_equal(e11, v1_doc);
    assert_int_equal(
        pt_q_int("SELECT count(*) FROM %s.cg_doc_retracted WHERE doc = '%s'", r.schema, v1_doc), 1);
    free(v1_doc);
    free(e11);
    pt_sh("grep -q 'pg.retracted_rows' '%s'/sink*.log", r.dir);
    pt_run_end(&r);
}

/* The same through graded release into a subscriber's database (pg.subscriber): the records
 * and the retraction carry the subscriber's pseudonyms of the document ids, alike. */
static void test_released(void **state)
{
    (void)state;
    pt_run_t r;
    subscriber_case_new(&r, "cg-it-docs2");
    load_versions(&r, 1);
    pt_run_end(&r);
}

#define ORDERS CG_SOURCE_DIR "/tests/golden/lifecycle_order_cancel_results/input.hl7"

/* The results, then (later: after a sink pass of them) the cancel (ORC-1 control, CA or OC); the
 * end state; then the results again. */
static void load_order_cancel(const pt_run_t *r, int released, int later, const char *control)
{
    const char *s = r->schema;
    /* one message a file (msg00: the ORU, msg01: the cancel), a line each in the case */
    pt_sh(
        "cd '%s' && csplit -s -z -f msg '%s' '/^MSH|/' '{*}' && sed -i 's/ORC|CA|/ORC|%s|/' msg01",
        r->dir, ORDERS, control);
    char oru[400], cancel[400], log[400];
    snprintf(oru, sizeof(oru), "%s/msg00", r->dir);
    snprintf(cancel, sizeof(cancel), "%s/msg01", r->dir);
    const char *first[] = {oru, cancel};
    produce_docs(r, first, later ? 1 : 2);
    gateway_run(r, released);
    sink_pass(r);
    if (later) {
        assert_int_equal(pt_q_int("SELECT count(*) FROM %s.measurement", s), 3);
        /* each result is kept as its order's: two orders */
        assert_int_equal(
            pt_q_int("SELECT count(*) FROM %s.cg_row_doc WHERE doc LIKE 'order:%%'", s), 3);
        assert_int_equal(pt_q_int("SELECT count(DISTINCT doc) FROM %s.cg_row_doc", s), 2);
        produce_docs(r, (const char *const[]){cancel}, 1);
        gateway_run(r, released);
        sink_pass(r);
    }
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_rejects", s), 0);
    char q[300];
    snprintf(q, sizeof(q), "SELECT string_agg(measurement_source_value, ',') FROM %s.measurement",
             s);
    char *left = pt_q_text(q);
    assert_string_equal(left, "2823-3");
    free(left);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_row_doc", s), 1);
    int oc = !strcmp(control, "OC"); /* an order cancelled stays so; a request may be refused */
    assert_int_equal(
        pt_q_int("SELECT count(*) FROM %s.cg_doc_retracted WHERE doc LIKE 'order:%%'", s), oc);
    snprintf(log, sizeof(log), "%s/sink.log", r->dir);
    assert_int_equal(tk_file_count(log, "sink.order_retracted"), 1);
    /* the results sent again: back after a refused request, left out after an OC */
    produce_docs(r, (const char *const[]){oru}, 1);
    gateway_run(r, released);
    sink_pass(r);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.measurement", s), oc ? 1 : 3);
}

static void test_order_cancel_later(void **state)
{
    (void)state;
    pt_run_t r;
    case_new(&r, "cg-it-ord", 50, 100, "", "");
    load_order_cancel(&r, 0, 1, "CA");
    pt_run_end(&r);
}

static void test_order_cancel_same_batch(void **state)
{
    (void)state;
    pt_run_t r;
    case_new(&r, "cg-it-ord1", 500, 5000, ", \"id_type\": \"bigint\"", "");
    load_order_cancel(&r, 0, 0, "CA");
    pt_run_end(&r);
}

static void test_order_cancel_released(void **state)
{
    (void)state;
    pt_run_t r;
    subscriber_case_new(&r, "cg-it-ord2");
    load_order_cancel(&r, 1, 1, "OC");
    /* the subscriber's pseudonym of the order: 40 hex digits, not the site's decimal hash */
    char q[200];
    snprintf(q, sizeof(q), "SELECT max(doc) FROM %s.cg_row_doc", r.schema);
    char *doc = pt_q_text(q);
    assert_int_equal(strlen(doc), strlen("order:") + 40);
    free(doc);
    pt_run_end(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_later),
        cmocka_unit_test(test_same_batch),
        cmocka_unit_test(test_released),
        cmocka_unit_test(test_out_of_order),
        cmocka_unit_test(test_order_cancel_later),
        cmocka_unit_test(test_order_cancel_same_batch),
        cmocka_unit_test(test_order_cancel_released),
    };
    return PT_RUN_TESTS(tests);
}
