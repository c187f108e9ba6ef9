/* test_spec.c - the spec compiler's errors and the evaluator's rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_pseudo.h"
#include "cg_spec.h"
#include "cg_vocab.h"
#include "spec_test_util.h"
#include "../../mappers/spec/spec_impl.h"
#include "../../mappers/spec/spec_mapper.h"

/* ---- transforms ---- */

static void ts(const char *in, int dt, const char *off, int shift, const char *want)
{
    char out[48];
    size_t n = cg_spec_ts_to_iso(in, strlen(in), dt, off, shift, out);
    if (!want) {
        assert_int_equal(n, 0);
        return;
    }
    assert_int_equal(n, strlen(want));
    assert_string_equal(out, want);
}

static void test_hl7_times(void **state)
{
    (void)state;
    ts("20240314", 0, NULL, 0, "2024-03-14");
    ts("20240314093000", 1, NULL, 0, "2024-03-14T09:30:00");
    ts("202403140930", 1, NULL, 0, "2024-03-14T09:30"); /* minute precision kept */
    ts("20240314093000.1234+0100", 1, NULL, 0, "2024-03-14T09:30:00.1234+01:00");
    ts("20240314093000-0500", 0, NULL, 0, "2024-03-14");
    ts("20240314093000", 1, "+08:00", 0, "2024-03-14T09:30:00+08:00");      /* configured zone */
    ts("20240314093000+0100", 1, "+08:00", 0, "2024-03-14T09:30:00+01:00"); /* value's zone wins */
    ts("2024", 0, NULL, 0, "2024-01-01");
    ts("202402", 0, NULL, 0, "2024-02-01");
    ts("20240229", 0, NULL, 0, "2024-02-29");
    ts("20240301", 0, NULL, -1, "2024-02-29"); /* shifts cross months and leap days */
    ts("20231231", 0, NULL, 1, "2024-01-01");
    ts("20240314093000", 1, NULL, 30, "2024-04-13T09:30:00");
    ts("20230229", 0, NULL, 0, NULL);
    ts("20241301", 0, NULL, 0, NULL);
    ts("2024031", 0, NULL, 0, NULL);
    ts("20240314093000+01", 1, NULL, 0, NULL);
    ts("2024-03-14", 0, NULL, 0, NULL);
    ts("", 0, NULL, 0, NULL);
    ts("20240314256000", 1, NULL, 0, NULL);
}

static void num(const char *in, int integer, const char *want)
{
    char out[64];
    size_t n = cg_spec_number(in, strlen(in), integer, out, sizeof(out));
    if (!want) {
        assert_int_equal(n, 0);
        return;
    }
    assert_string_equal(out, want);
}

static void test_numbers(void **state)
{
    (void)state;
    num("7.2", 0, "7.2");
    num(" +007.50 ", 0, "7.5");
    num(".5", 0, "0.5");
    num("5.", 0, "5");
    num("-0", 0, "0");
    num("-12", 1, "-12");
    num("1.5", 1, NULL);
    num("1e5", 0, NULL);
    num("abc", 0, NULL);
    num("", 0, NULL);
    num("-", 0, NULL);
    num("1.2.3", 0, NULL);
    num("12345678901234567890", 1, NULL);
}

/* ---- compile errors ---- */

static size_t compile_errors(const char *text, cg_error_t *errs, size_t max)
{
    size_t n = 0;
    cg_spec_env_t env = {.vocab = vocab, .pseudo = pseudo};
    cg_specset_t *ss = cg_specset_load_string(text, "t.json", &env, errs, max, &n);
    assert_null(ss);
    return n;
}

static void test_compile_errors_are_located_and_all_reported(void **state)
{
    (void)state;
    const char *text =
        "{\"spec\":\"t\",\"version\":1,\n"
        " \"input\":{\"format\":\"hl7v2\",\"messages\":[\"ORU^R01\"]},\n"
        " \"patient\":{\"id\":\"PID-3.1\",\"authority\":\"PID-3.4.1\"},\n"
        " \"rules\":[{\"name\":\"r1\",\"table\":\"measurement\",\"foreach\":\"OBX[*]\",\n"
        "  \"columns\":{\"person_id\":{\"patient\":\"person_id\"},\n"
        "   \"measurement_concept_id\":{\"path\":\"OBX-3.1\",\"pipe\":[\"dte\"]},\n"
        "   \"measurement_date\":\"OBX-14!\",\n"
        "   \"measurement_type_concept_id\":32817,\n"
        "   \"no_such_column\":1}},\n"
        "  {\"name\":\"r2\",\"table\":\"measurment\",\"columns\":{}}]}\n";
    cg_error_t errs[16];
    size_t n = compile_errors(text, errs, 16);
    assert_int_equal(n, 4);
    /* unknown transform, at the "dte" string */
    assert_string_equal(errs[0].file, "t.json");
    assert_int_equal(errs[0].line, 6);
    assert_int_equal(errs[0].column, 55);
    assert_non_null(strstr(errs[0].text, "rule 'r1': unknown transform 'dte'"));
    /* a bad path: the column points at the offending character inside the string */
    assert_int_equal(errs[1].line, 7);
    assert_int_equal(errs[1].column, 30);
    assert_non_null(strstr(errs[1].text, "rule 'r1'"));
    /* an unknown column names the table */
    assert_int_equal(errs[2].line, 9);
    assert_non_null(strstr(errs[2].text, "table measurement has no column 'no_such_column'"));
    /* an unknown table */
    assert_int_equal(errs[3].line, 10);
    assert_non_null(strstr(errs[3].text, "rule 'r2'"));
    /* the tables of every target, each as the target calls them */
    assert_non_null(strstr(errs[3].text, "\"table\" must name an OMOP CDM v5.4 table or a "
                                         "cohortgate.* table, not 'measurment'"));
}

static void test_compile_errors_more(void **state)
{
    (void)state;
    cg_error_t errs[8];
    /* a required column not mapped */
    size_t n = compile_errors(
        "{\"spec\":\"t\",\"version\":1,\"input\":{\"format\":\"hl7v2\",\"messages\":[\"ADT\"]},"
        "\"rules\":[{\"name\":\"p\",\"table\":\"person\",\"columns\":{\"person_id\":1}}]}",
        errs, 8);
    assert_true(n >= 1);
    assert_non_null(strstr(errs[0].text, "required column person.gender_concept_id"));
    /* JSON syntax */
    n = compile_errors("{\"spec\":\n\"t\",,}", errs, 8);
    assert_int_equal(n, 1);
    assert_int_equal(errs[0].line, 2);
    /* an unknown variable, a bad message type, an unknown condition */
    n = compile_errors(
        "{\"spec\":\"t\",\"version\":1,\"input\":{\"format\":\"hl7v2\",\"messages\":[\"OR U\"]},"
        "\"rules\":[{\"name\":\"o\",\"table\":\"observation\",\"when\":{\"equals\":[1,1]},"
        "\"columns\":{\"person_id\":{\"var\":\"nope\"},\"observation_concept_id\":0,"
        "\"observation_date\":\"OBX-14\",\"observation_type_concept_id\":32817}}]}",
        errs, 8);
    assert_int_equal(n, 3);
    assert_non_null(strstr(errs[0].text, "'OR U' is not a message type"));
    assert_non_null(strstr(errs[1].text, "unknown condition 'equals'"));
    assert_non_null(strstr(errs[2].text, "no binding named 'nope'"));
    /* a regex that does not compile */
    n = compile_errors(
        "{\"spec\":\"t\",\"version\":1,\"input\":{\"format\":\"hl7v2\",\"messages\":[\"ORU\"]},"
        "\"rules\":[{\"name\":\"o\",\"table\":\"observation\",\"when\":{\"regex\":[\"OBX-5\",\"(\"]"
        "},"
        "\"columns\":{\"person_id\":1,\"observation_concept_id\":0,"
        "\"observation_date\":\"OBX-14\",\"observation_type_concept_id\":32817}}]}",
        errs, 8);
    assert_int_equal(n, 1);
    assert_non_null(strstr(errs[0].text, "regex '(' does not compile"));
}

/* ---- evaluation ---- */

static const char *ORU =
    "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01^ORU_R01|M42|P|2.5.1\r"
    "PID|1||12345^^^HOSP&1.2.3&ISO^MR||Doe^Jane||19670412|F\r"
    "OBR|1|O1|F1|4548-4^HbA1c^LN|||20240314093000\r"
    "OBX|1|NM|4548-4^HbA1c^LN||7.2|%^percent^UCUM|4.0-5.6|H|||F\r"
    "OBX|2|SN|2160-0^Creatinine^LN||>^10|mg/dL|0.7-1.3|HH|||P|||20240315120000\r"
    "OBX|3|ST|8251-1^Service comment^LN||Sample \\T\\ result ok||||||F\r";

static cg_specset_t *load_shipped(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/specs/%s", CG_SOURCE_DIR, name);
    cg_error_t errs[8];
    size_t n = 0;
    cg_spec_env_t env = {.vocab = vocab, .pseudo = pseudo};
    cg_specset_t *ss = cg_specset_load(path, &env, errs, 8, &n);
    for (size_t i = 0; i < n && i < 8; i++)
        fprintf(stderr, "%s:%d:%d: %s\n", errs[i].file, errs[i].line, errs[i].column, errs[i].text);
    return ss;
}

/* A mapper of the shipped ORU spec (and the set, to destroy after it). */
static cg_mapper_t *oru_mapper(cg_specset_t **ss)
{
    *ss = load_shipped("hl7v2-oru-omop.json");
    assert_non_null(*ss);
    char err[256];
    cg_spec_env_t env = {.vocab = vocab, .pseudo = pseudo};
    cg_mapper_t *mp = cg_mapper_new(*ss, &env, err, sizeof(err));
    assert_non_null(mp);
    return mp;
}

static void test_oru_rows(void **state)
{
    (void)state;
    cg_specset_t *ss;
    cg_mapper_t *mp = oru_mapper(&ss);
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    assert_int_equal(cg_mapper_map_hl7(mp, ORU, strlen(ORU), &rows, &n, &me), CG_OK);
    assert_int_equal(n, 3);

    cg_pseudo_person_t who;
    cg_pseudo_person(pseudo, CG_SLICE_LIT("HOSP"), CG_SLICE_LIT("12345"), &who);
    char want[256];

    assert_string_equal(rows[0].table->name, "measurement");
    assert_string_equal(rows[0].rule, "obx-numeric");
    const char *r0 = row_json(&rows[0]);
    snprintf(want, sizeof(want), "\"person_id\":%lld,", (long long)who.person_id);
    assert_non_null(strstr(r0, want));
    assert_non_null(strstr(r0, "\"measurement_concept_id\":3004410,"));
    assert_non_null(strstr(r0, "\"measurement_date\":\"2024-03-14\""));
    assert_non_null(strstr(r0, "\"measurement_datetime\":\"2024-03-14T09:30:00\""));
    assert_non_null(strstr(r0, "\"value_as_number\":7.2,"));
    assert_non_null(strstr(r0, "\"unit_concept_id\":8554,"));
    assert_non_null(strstr(r0, "\"range_low\":4,\"range_high\":5.6,"));
    assert_non_null(strstr(r0, "\"operator_concept_id\":null"));
    assert_non_null(strstr(r0, "\"measurement_source_value\":\"4548-4\""));
    assert_true(strncmp(r0, "{\"measurement_id\":", 18) == 0); /* generated primary key */
    assert_memory_equal(rows[0].person_key.ptr, who.source_value, 40);
    /* the values are typed: numbers and dates as such, null apart from absent */
    const cg_value_t *v = cg_row_value_named(&rows[0], "value_as_number");
    assert_int_equal(v->kind, CG_VALUE_NUMBER);
    assert_int_equal(v->len, 3);
    assert_memory_equal(v->ptr, "7.2", 3);
    assert_int_equal(cg_row_value_named(&rows[0], "measurement_concept_id")->kind,
                     CG_VALUE_INTEGER);
    assert_int_equal(cg_row_value_named(&rows[0], "measurement_date")->kind, CG_VALUE_DATE);
    assert_int_equal(cg_row_value_named(&rows[0], "operator_concept_id")->kind, CG_VALUE_NULL);
    assert_int_equal(cg_row_value_named(&rows[0], "visit_detail_id")->kind, CG_VALUE_ABSENT);
    assert_string_equal(cg_row_standard(&rows[0]), "omop-cdm-5.4");

    /* SN ">^10": comparator and number; OBX-14 wins over OBR-7; unknown code → concept 0 */
    const char *r1 = row_json(&rows[1]);
    assert_non_null(strstr(r1, "\"operator_concept_id\":4172704,"));
    assert_non_null(strstr(r1, "\"value_as_number\":10,"));
    assert_non_null(strstr(r1, "\"measurement_date\":\"2024-03-15\""));
    assert_non_null(strstr(r1, "\"measurement_concept_id\":0,"));
    assert_non_null(strstr(r1, "\"measurement_source_value\":\"2160-0\""));

    /* text result: an observation without its text (free text: only when a site opts in,
     * test_free_text) */
    assert_string_equal(rows[2].table->name, "observation");
    assert_null(strstr(row_json(&rows[2]), "value_as_string"));
    assert_null(strstr(row_json(&rows[2]), "Sample"));

    /* ids are deterministic: the same message maps to the same ids */
    char first[64];
    snprintf(first, sizeof(first), "%.*s", 40, row_json(&rows[0]));
    assert_int_equal(cg_mapper_map_hl7(mp, ORU, strlen(ORU), &rows, &n, &me), CG_OK);
    assert_memory_equal(row_json(&rows[0]), first, 40);

    /* no raw identifier in any row */
    for (size_t i = 0; i < n; i++)
        assert_null(strstr(row_json(&rows[i]), "12345"));
    cg_mapper_destroy(mp);
    cg_specset_destroy(ss);
}

/* ---- rules over the same foreach in one pass; values shared by an order's rows ---- */

#define ORU2_HEAD                                                                                  \
    "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|M50|P|2.5.1\r"                              \
    "PID|1||12345^^^HOSP&1.2.3&ISO^MR||Doe^Jane||19670412|F\r"
#define ORU2_ORDER1                                                                                \
    "ORC|NW|O1|F1\r"                                                                               \
    "OBR|1|O1|F1|4548-4^HbA1c^LN|||20240314093000\r"                                               \
    "OBX|1|NM|4548-4^HbA1c^LN||7.2|%^percent^UCUM|4.0-5.6|H|||F\r"                                 \
    "OBX|2|CE|5778-6^Color^LN||Y^Yellow^L||||||F\r"                                                \
    "OBX|3|ST|8251-1^Comment^LN||ok||||||F\r"                                                      \
    "OBX|4|NM|2345-7^Glucose^LN||99|mg/dL|||||F\r"
#define ORU2_ORDER2                                                                                \
    "ORC|CA|O2|F2\r"                                                                               \
    "OBR|2|O2|F2|24331-1^Lipids^LN|||20240315080000\r"                                             \
    "OBX|1|NM|2093-3^Cholesterol^LN||180|mg/dL|||||F\r"                                            \
    "OBX|2|CE|5778-6^Color^LN||Y^Yellow^L||||||F\r"

typedef struct row_seen {
    char rule[40], id[24], when[24];
    int op;
} row_seen_t;

/* The text of a row's meta fact name, or of its column name when meta has none; "" absent. */
static void fact_of(const cg_row_t *r, const char *name, char *out, size_t n)
{
    const cg_row_meta_t *m = cg_row_meta(r, name);
    const cg_value_t *v = m ? &m->value : cg_row_value_named(r, name);
    out[0] = '\0';
    if (v && v->ptr)
        snprintf(out, n, "%.*s", (int)v->len, v->ptr);
}

/* The order retractions of the last rows_seen, which leaves them out. */
static size_t retractions;

/* What the test compares of each row: its rule, id, op and meta order_datetime. */
static size_t rows_seen(cg_mapper_t *mp, const char *msg, row_seen_t *out, size_t max)
{
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    assert_int_equal(cg_mapper_map_hl7(mp, msg, strlen(msg), &rows, &n, &me), CG_OK);
    assert_true(n <= max);
    size_t o = 0;
    retractions = 0;
    for (size_t k = 0; k < n; k++) {
        if (rows[k].op == CG_ROW_RETRACT) { /* an order cancel's: counted, checked apart */
            assert_string_equal(rows[k].table->name, CG_ROW_ORDER_RETRACTION);
            retractions++;
            continue;
        }
        size_t i = o++;
        const cg_row_t *row = &rows[k];
        const cg_value_t *id = &row->values[0]; /* the tables' first column is their key */
        snprintf(out[i].rule, sizeof(out[i].rule), "%s", row->rule);
        snprintf(out[i].id, sizeof(out[i].id), "%.*s", (int)id->len, id->ptr);
        out[i].op = row->op;
        fact_of(row, "order_datetime", out[i].when, sizeof(out[i].when));
    }
    return o;
}

static void test_foreach_pass_and_order_values(void **state)
{
    (void)state;
    cg_specset_t *ss;
    cg_mapper_t *mp = oru_mapper(&ss);
    row_seen_t all[16], one[16], two[16];
    size_t n = rows_seen(mp, ORU2_HEAD ORU2_ORDER1 ORU2_ORDER2, all, 16);
    assert_int_equal(retractions, 1); /* the second order's cancel (ORC-1 CA) */
    size_t n1 = rows_seen(mp, ORU2_HEAD ORU2_ORDER1, one, 16);
    size_t n2 = rows_seen(mp, ORU2_HEAD ORU2_ORDER2, two, 16);
    assert_int_equal(n, 6);
    assert_int_equal(n1 + n2, n);
    /* in rule order, each rule's rows in segment order, as rules run one after another: the
     * numeric results of both orders, then the coded ones, then the text */
    static const char *want_rules[] = {"obx-numeric", "obx-numeric", "obx-numeric",
                                       "obx-coded",   "obx-coded",   "obx-text"};
    for (size_t i = 0; i < n; i++)
        assert_string_equal(all[i].rule, want_rules[i]);
    /* each row has its own order's values (the id's filler number, ORC-1, OBR-7), though the
     * order's values are computed once for all its results: the same as each order alone */
    size_t i1 = 0, i2 = 0;
    for (size_t i = 0; i < n; i++) {
        int first = i1 < n1 && !strcmp(one[i1].rule, all[i].rule) && !strcmp(one[i1].id, all[i].id);
        const row_seen_t *alone = first ? &one[i1++] : &two[i2++];
        assert_string_equal(alone->rule, all[i].rule);
        assert_string_equal(alone->id, all[i].id);
        assert_int_equal(alone->op, all[i].op);
        assert_string_equal(alone->when, all[i].when);
        /* the second order is cancelled (ORC-1 CA): its rows are retractions */
        assert_int_equal(all[i].op, first ? CG_ROW_UPSERT : CG_ROW_DELETE);
        if (!first)
            assert_string_equal(all[i].when, "2024-03-15T08:00:00");
        else
            assert_string_equal(all[i].when, "2024-03-14T09:30:00");
    }
    assert_int_equal(i1, n1);
    assert_int_equal(i2, n2);
    /* the same coded result in both orders: two facts, two ids */
    assert_string_not_equal(all[3].id, all[4].id);

    /* two rules fail at different results: the message fails with the first rule's failure,
     * as when the rules ran one by one, not with the first result's */
    const cg_row_t *rows;
    cg_error_t me;
    const char *bad = ORU2_HEAD "OBR|1|O1|F1|4548-4^HbA1c^LN|||20240314093000\r"
                                "OBX|1|CE|5778-6^Color^LN||Y^Yellow^L||||||F|||2024-03-14\r"
                                "OBX|2|NM|4548-4^HbA1c^LN||7.4|%|||||F|||2024-03-14\r";
    assert_int_equal(cg_mapper_map_hl7(mp, bad, strlen(bad), &rows, &n, &me), CG_ERR_MAP);
    assert_int_equal(n, 0);
    assert_string_equal(me.rule, "obx-numeric");
    assert_string_equal(me.out_column, "measurement_date");
    cg_mapper_destroy(mp);
    cg_specset_destroy(ss);
}

static void test_required_failure_gives_no_rows(void **state)
{
    (void)state;
    cg_specset_t *ss = load_shipped("hl7v2-oru-omop.json");
    assert_non_null(ss);
    char err[256];
    cg_spec_env_t env = {.vocab = vocab, .pseudo = pseudo};
    cg_mapper_t *mp = cg_mapper_new(ss, &env, err, sizeof(err));
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    /* second OBX has a malformed time: the first OBX's row must not come out alone */
    const char *bad = "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|M43|P|2.5.1\r"
                      "PID|1||777^^^HOSP^MR\r"
                      "OBR|1|O1|F1|4548-4^HbA1c^LN|||20240314093000\r"
                      "OBX|1|NM|4548-4^HbA1c^LN||7.2|%\r"
                      "OBX|2|NM|4548-4^HbA1c^LN||7.4|%|||||F|||2024-03-14\r";
    assert_int_equal(cg_mapper_map_hl7(mp, bad, strlen(bad), &rows, &n, &me), CG_ERR_MAP);
    assert_int_equal(n, 0);
    assert_null(rows);
    assert_string_equal(me.stage, "map");
    assert_string_equal(me.rule, "obx-numeric");
    assert_string_equal(me.out_column, "measurement_date");
    assert_non_null(strstr(me.text, "not an HL7 date/time"));

    /* no patient identifier: a required value */
    const char *nopid = "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|M44|P|2.5.1\r"
                        "PID|1||\r"
                        "OBX|1|NM|4548-4^HbA1c^LN||7.2|%\r";
    assert_int_equal(cg_mapper_map_hl7(mp, nopid, strlen(nopid), &rows, &n, &me), CG_ERR_REQUIRED);
    assert_non_null(strstr(me.text, "patient identifier"));

    /* a message no spec takes */
    const char *adt = "MSH|^~\\&|A|B|C|D|20240314||ADT^A01|M45|P|2.5\rPID|1||1^^^H\r";
    assert_int_equal(cg_mapper_map_hl7(mp, adt, strlen(adt), &rows, &n, &me), CG_ERR_MAP);
    assert_string_equal(me.stage, "select");
    assert_non_null(strstr(me.text, "no spec takes ADT^A01"));

    /* not HL7 at all */
    assert_int_not_equal(cg_mapper_map_hl7(mp, "hello", 5, &rows, &n, &me), CG_OK);
    assert_string_equal(me.stage, "decode");
    cg_mapper_destroy(mp);
    cg_specset_destroy(ss);
}

static void test_trace_names_rule_and_path(void **state)
{
    (void)state;
    cg_specset_t *ss = load_shipped("hl7v2-oru-omop.json");
    char err[256];
    cg_spec_env_t env = {.vocab = vocab, .pseudo = pseudo};
    cg_mapper_t *mp = cg_mapper_new(ss, &env, err, sizeof(err));
    cg_mapper_set_trace(mp, 1);
    const cg_row_t *rows;
    size_t n;
    assert_int_equal(cg_mapper_map_hl7(mp, ORU, strlen(ORU), &rows, &n, NULL), CG_OK);
    assert_non_null(
        strstr(row_trace(&rows[0]),
               "\"unit_source_value\":{\"rule\":\"obx-numeric\",\"source\":\"OBX-6.1\"}"));
    /* the steps behind a value: the vocabulary row a lookup found, the coalesce branch (here
     * through the binding "when"), the map entry */
    const char *t0 = row_trace(&rows[0]);
    if (!strstr(t0, "\"measurement_concept_id\":{\"rule\":\"obx-numeric\",\"source\":\"OBX-3."
                    "1\",\"steps\":\"lookup LN \\\"4548-4\\\": concept_id 3004410,"))
        fail_msg("%s", t0);
    assert_non_null(
        strstr(t0, "\"source\":\"when\",\"steps\":\"when: coalesce: branch 2 of 3 (OBR-7)\""));
    const char *t1 = row_trace(&rows[1]);
    assert_non_null(strstr(t1, "\"steps\":\"when: coalesce: branch 1 of 3 (OBX-14)\""));
    assert_non_null(strstr(t1, "\"steps\":\"map: \\\">\\\" -> 4172704\""));
    /* unit_source_value above took no step (its source closes the object); unit_concept_id did */
    assert_non_null(strstr(t0, "\"steps\":\"unit \\\"%\\\": unit_concept_id 8554\""));
    cg_mapper_destroy(mp);
    cg_specset_destroy(ss);
}

/* "params": defaults a site may override (cg_spec_env_t.params), put into paths as ${NAME}
 * before they compile; an undeclared ${NAME} is an error at its string. */
static void test_params(void **state)
{
    (void)state;
    const char *spec = "{\"spec\": \"p\", \"version\": 1, \"params\": {\"types\": \"MR|*\"},\n"
                       " \"input\": {\"format\": \"hl7v2\", \"messages\": [\"ADT^A04\"]},\n"
                       " \"patient\": {\"id\": \"PID-3[5=${types}].1\", \"authority\": "
                       "\"PID-3[5=${types}].4.1\"},\n"
                       " \"rules\": [{\"name\": \"r\", \"table\": \"observation\",\n"
                       "  \"columns\": {\"person_id\": {\"patient\": \"person_id\"},\n"
                       "   \"observation_concept_id\": 0, \"observation_type_concept_id\": 32817,\n"
                       "   \"observation_date\": {\"const\": \"2024-01-01\"},\n"
                       "   \"observation_source_value\": \"PID-3[5=${types}].1\"}}]}";
    const char *msg = "MSH|^~\\&|A|H|C|R|20240101||ADT^A04|P1|P|2.5.1\r"
                      "PID|1||N1^^^CHN^NNCHN~H1^^^H^MR\r";
    const char *want[] = {"\"observation_source_value\":\"H1\"",
                          "\"observation_source_value\":\"N1\""};
    for (int site = 0; site < 2; site++) {
        cg_spec_param_t p = {"types", "NNCHN|MR"};
        cg_spec_env_t env = {.vocab = vocab, .pseudo = pseudo, .params = &p, .n_params = site};
        cg_error_t errs[4];
        size_t n = 0;
        cg_specset_t *ss = cg_specset_load_string(spec, "p.json", &env, errs, 4, &n);
        if (!ss)
            fail_msg("%s", errs[0].text);
        char err[256];
        cg_mapper_t *mp = cg_mapper_new(ss, &env, err, sizeof(err));
        const cg_row_t *rows;
        size_t nr;
        assert_int_equal(cg_mapper_map_hl7(mp, msg, strlen(msg), &rows, &nr, NULL), CG_OK);
        assert_int_equal(nr, 1);
        if (!strstr(row_json(&rows[0]), want[site]))
            fail_msg("site %d: %s", site, row_json(&rows[0]));
        cg_mapper_destroy(mp);
        cg_specset_destroy(ss);
    }
    /* ${NAME} that the spec does not declare: located at its string */
    const char *bad =
        "{\"spec\": \"p\", \"version\": 1,\n"
        " \"input\": {\"format\": \"hl7v2\", \"messages\": [\"ADT^A04\"]},\n"
        " \"patient\": {\"id\": \"PID-3[5=${types}].1\"},\n"
        " \"rules\": [{\"name\": \"r\", \"table\": \"death\", \"columns\": {\"person_id\": "
        "{\"patient\": \"person_id\"}, \"death_date\": \"PID-29\"}}]}";
    cg_error_t errs[4];
    size_t n = 0;
    assert_null(cg_specset_load_string(bad, "p.json", NULL, errs, 4, &n));
    assert_int_equal(n, 1);
    assert_int_equal(errs[0].line, 3);
    assert_int_equal(errs[0].column, 20); /* the string's opening quote */
    assert_non_null(strstr(errs[0].text, "'${types}' is not a parameter of the spec"));
}

/* A rule's when is tested before its lets, unless it reads them: a let that cannot be computed
 * fails only the rows the rule makes. */
static void test_when_before_rule_lets(void **state)
{
    (void)state;
    const char *spec =
        "{\"spec\": \"when-first\", \"version\": 1,\n"
        " \"input\": {\"format\": \"hl7v2\", \"messages\": [\"ORU^R01\"]},\n"
        " \"patient\": {\"id\": \"PID-3.1\", \"authority\": \"PID-3.4.1\"},\n"
        " \"rules\": [\n"
        "  {\"name\": \"nm\", \"table\": \"measurement\", \"foreach\": \"OBX[*]\",\n"
        "   \"let\": {\"t\": {\"path\": \"OBX-14\", \"pipe\": [\"datetime\"]}},\n"
        "   \"when\": {\"eq\": [\"OBX-2\", {\"const\": \"NM\"}]},\n"
        "   \"columns\": {\"person_id\": {\"patient\": \"person_id\"},\n"
        "     \"measurement_concept_id\": 0, \"measurement_type_concept_id\": 32817,\n"
        "     \"measurement_date\": {\"path\": \"OBX-14\", \"pipe\": [\"date\"]},\n"
        "     \"measurement_datetime\": {\"var\": \"t\"}}},\n"
        "  {\"name\": \"uses-let\", \"table\": \"measurement\", \"foreach\": \"OBX[*]\",\n"
        "   \"let\": {\"v\": \"OBX-5\"},\n"
        "   \"when\": {\"eq\": [{\"var\": \"v\"}, {\"const\": \"42\"}]},\n"
        "   \"columns\": {\"person_id\": {\"patient\": \"person_id\"},\n"
        "     \"measurement_concept_id\": 0, \"measurement_type_concept_id\": 32817,\n"
        "     \"measurement_date\": {\"const\": \"2024-03-14\"},\n"
        "     \"value_as_number\": {\"var\": \"v\"}}}]}\n";
    cg_specset_t *ss = spec_test_load(spec, "when-first.json");
    cg_mapper_t *mp = spec_test_mapper(ss);
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    /* the ST OBX has a bad OBX-14; rule nm does not take it, so its let is not evaluated */
    const char *ok = "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|M50|P|2.5.1\r"
                     "PID|1||777^^^HOSP^MR\r"
                     "OBX|1|NM|4548-4^HbA1c^LN||42|%|||||F|||20240314093000\r"
                     "OBX|2|ST|8251-1^Note^LN||text|||||||F|||not-a-time\r";
    cg_err_t rc = cg_mapper_map_hl7(mp, ok, strlen(ok), &rows, &n, &me);
    if (rc)
        fprintf(stderr, "%s: %s %s: %s\n", me.stage, me.rule, me.out_column, me.text);
    assert_int_equal(rc, CG_OK);
    assert_int_equal(n, 2); /* nm for OBX 1, uses-let for OBX 1 (its when reads its let) */
    assert_non_null(strstr(row_json(&rows[0]), "\"measurement_datetime\":\"2024-03-14T09:30:00\""));
    assert_non_null(strstr(row_json(&rows[1]), "\"value_as_number\":42"));
    /* a row the rule makes still fails on its let */
    const char *bad = "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|M51|P|2.5.1\r"
                      "PID|1||777^^^HOSP^MR\r"
                      "OBX|1|NM|4548-4^HbA1c^LN||7|%|||||F|||not-a-time\r";
    assert_int_equal(cg_mapper_map_hl7(mp, bad, strlen(bad), &rows, &n, &me), CG_ERR_MAP);
    assert_string_equal(me.rule, "nm");
    assert_non_null(strstr(me.text, "not an HL7 date/time"));
    /* the compiler saw which when reads a rule let */
    const spec_t *s = &ss->specs[0];
    assert_int_equal(s->rules[0].when_uses_lets, 0);
    assert_int_equal(s->rules[1].when_uses_lets, 1);
    cg_mapper_destroy(mp);
    cg_specset_destroy(ss);
}

/* A code whose standard concept is in the Observation domain goes to observation. */
static void test_domain_routes_the_row(void **state)
{
    (void)state;
    cg_specset_t *ss = load_shipped("hl7v2-oru-omop.json");
    char err[256];
    cg_spec_env_t env = {.vocab = vocab, .pseudo = pseudo};
    cg_mapper_t *mp = cg_mapper_new(ss, &env, err, sizeof(err));
    const char *msg = "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|M50|P|2.5.1\r"
                      "PID|1||555^^^HOSP^MR\r"
                      "OBR|1|O1|F1|X^X^LN|||20240314093000\r"
                      "OBX|1|NM|99999-9^Fictional^LN||12|%|||||F\r"
                      "OBX|2|NM|4548-4^HbA1c^LN||6.5|%|||||F\r";
    const cg_row_t *rows;
    size_t n;
    assert_int_equal(cg_mapper_map_hl7(mp, msg, strlen(msg), &rows, &n, NULL), CG_OK);
    assert_int_equal(n, 2);
    /* rules run in spec order: the observation rule comes second in the file */
    const cg_row_t *obs = !strcmp(rows[0].table->name, "observation") ? &rows[0] : &rows[1];
    const cg_row_t *meas = obs == &rows[0] ? &rows[1] : &rows[0];
    assert_string_equal(obs->table->name, "observation");
    assert_string_equal(obs->rule, "obx-numeric-observation");
    assert_non_null(strstr(row_json(obs), "\"observation_concept_id\":2000000001,"));
    assert_non_null(strstr(row_json(obs), "\"value_as_number\":12,"));
    assert_string_equal(meas->table->name, "measurement");
    assert_non_null(strstr(row_json(meas), "\"measurement_concept_id\":3004410,"));
    cg_mapper_destroy(mp);
    cg_specset_destroy(ss);
}

/* Selection: a "no_research_content" spec consumes what it declares (a counted outcome, no
 * error), a mapping spec that takes the same message wins, a message a spec takes and no rule
 * maps is "no rows", and what no spec takes still fails at select. */
static void test_outcomes_and_no_research_content(void **state)
{
    (void)state;
    const char *text = "{\"spec\": \"nrc\", \"version\": 1, \"input\": {\"format\": \"hl7v2\", "
                       "\"messages\": [\"SIU\", \"ADT^A20|A01\"]}, "
                       "\"no_research_content\": \"scheduling and bed status\"}";
    const char *oru = "{\"spec\": \"oru\", \"version\": 1, \"input\": {\"format\": \"hl7v2\", "
                      "\"messages\": [\"ORU^R01\", \"ADT^A01\"]}, \"patient\": {\"id\": "
                      "\"PID-3.1\", \"authority\": \"PID-3.4.1\"}, "
                      "\"rules\": [{\"name\": \"r\", \"table\": \"observation\", \"foreach\": "
                      "\"OBX[*]\", \"columns\": {\"person_id\": {\"patient\": \"person_id\"}, "
                      "\"observation_concept_id\": 0, \"observation_date\": {\"path\": \"MSH-7\", "
                      "\"pipe\": [\"date\"]}, \"observation_type_concept_id\": 32817}}]}";
    char both[2048];
    cg_error_t errs[4];
    size_t n_errs = 0;
    /* two specs in one set: a folder would do the same; load_string takes one, so join them */
    cg_specset_t *nrc = cg_specset_load_string(text, "nrc.json", NULL, errs, 4, &n_errs);
    assert_non_null(nrc);
    cg_specset_destroy(nrc);
    char dir[] = "/tmp/cg-test-spec-XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(both, sizeof(both), "%s/a.json", dir);
    FILE *f = fopen(both, "w");
    fputs(text, f);
    fclose(f);
    snprintf(both, sizeof(both), "%s/b.json", dir);
    f = fopen(both, "w");
    fputs(oru, f);
    fclose(f);
    cg_spec_env_t env = {.vocab = vocab, .pseudo = pseudo};
    cg_specset_t *ss = cg_specset_load(dir, &env, errs, 4, &n_errs);
    assert_non_null(ss);
    char err[256];
    cg_mapper_t *mp = cg_mapper_new(ss, &env, err, sizeof(err));
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    cg_map_outcome_t o;

    const char *siu = "MSH|^~\\&|S|H|C|R|20240314||SIU^S12|1|P|2.5\rSCH|1\r";
    assert_int_equal(cg_mapper_map_hl7(mp, siu, strlen(siu), &rows, &n, &me), CG_OK);
    assert_int_equal(n, 0);
    cg_mapper_outcome(mp, &o);
    assert_int_equal(o.kind, CG_MAP_NO_RESEARCH_CONTENT);
    assert_string_equal(o.type, "SIU");
    assert_string_equal(o.spec, "nrc");
    assert_string_equal(o.reason, "scheduling and bed status");
    assert_string_equal(cg_map_outcome_name(o.kind), "no_research_content");

    const char *a20 = "MSH|^~\\&|S|H|C|R|20240314||ADT^A20|2|P|2.5\rNPU|1\r";
    assert_int_equal(cg_mapper_map_hl7(mp, a20, strlen(a20), &rows, &n, &me), CG_OK);
    cg_mapper_outcome(mp, &o);
    assert_int_equal(o.kind, CG_MAP_NO_RESEARCH_CONTENT);
    assert_string_equal(o.type, "ADT^A20");

    /* ADT^A01 is declared by both: the mapping spec wins; it has no OBX, so no rows */
    const char *a01 = "MSH|^~\\&|S|H|C|R|20240314||ADT^A01|3|P|2.5\rPID|1||9^^^H\r";
    assert_int_equal(cg_mapper_map_hl7(mp, a01, strlen(a01), &rows, &n, &me), CG_OK);
    cg_mapper_outcome(mp, &o);
    assert_int_equal(o.kind, CG_MAP_NO_ROWS);
    assert_string_equal(o.type, "ADT^A01");
    assert_null(o.spec);

    const char *r01 = "MSH|^~\\&|S|H|C|R|20240314||ORU^R01|4|P|2.5\rPID|1||9^^^H\r"
                      "OBR|1\rOBX|1|ST|X||v\r";
    assert_int_equal(cg_mapper_map_hl7(mp, r01, strlen(r01), &rows, &n, &me), CG_OK);
    assert_int_equal(n, 1);
    cg_mapper_outcome(mp, &o);
    assert_int_equal(o.kind, CG_MAP_ROWS);
    assert_string_equal(o.type, "ORU^R01");

    /* an event no spec names, of a type no spec takes whole: still a select error */
    const char *a02 = "MSH|^~\\&|S|H|C|R|20240314||ADT^A02|5|P|2.5\rPID|1||9^^^H\r";
    assert_int_equal(cg_mapper_map_hl7(mp, a02, strlen(a02), &rows, &n, &me), CG_ERR_MAP);
    assert_string_equal(me.stage, "select");
    assert_non_null(strstr(me.text, "no spec takes ADT^A02"));
    /* an event longer than any trigger's, and a type of the "SIU" declaration */
    const char *long_ev = "MSH|^~\\&|S|H|C|R|20240314||SIU^S12345678|6|P|2.5\r";
    assert_int_equal(cg_mapper_map_hl7(mp, long_ev, strlen(long_ev), &rows, &n, &me), CG_OK);
    cg_mapper_outcome(mp, &o);
    assert_string_equal(o.type, "SIU");

    cg_mapper_destroy(mp);
    cg_specset_destroy(ss);
    snprintf(both, sizeof(both), "rm -rf %s", dir);
    assert_int_equal(system(both), 0);

    /* a declaration maps nothing: rules beside it are an error, located */
    const char *bad = "{\"spec\": \"x\", \"version\": 1, \"input\": {\"format\": \"hl7v2\", "
                      "\"messages\": [\"SIU\"]}, \"no_research_content\": \"\", \"rules\": []}";
    assert_null(cg_specset_load_string(bad, "bad.json", NULL, errs, 4, &n_errs));
    assert_int_equal(n_errs, 2);
    assert_non_null(strstr(errs[0].text, "non-empty string"));
    assert_non_null(strstr(errs[1].text, "has no \"rules\""));
    assert_int_equal(errs[1].line, 1);
}

/* An order's results and its cancel name the order alike: two orders' results in an ORU, then
 * a placer's ORM cancelling both, the second without its OBR (ORM allows an ORC alone), and a
 * third order cancelled by the filler's number alone, repeating its result: that one gives no
 * retraction (its results are known by the placer's number) and does not fail the message. */
static void test_order_cancel_names_each_order(void **state)
{
    (void)state;
    cg_specset_t *ss;
    cg_mapper_t *mp = oru_mapper(&ss);
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    char results[2][32], cancels[2][32];
    const char *oru = ORU2_HEAD ORU2_ORDER1 "ORC|RE|O2|F2\r"
                                            "OBR|2|O2|F2|24331-1^Lipids^LN|||20240315080000\r"
                                            "OBX|1|NM|2093-3^Cholesterol^LN||180|mg/dL|||||F\r"
                                            "OBR|3||F3|2823-3^Potassium^LN|||20240315080000\r"
                                            "OBX|1|NM|2823-3^Potassium^LN||4.1|mmol/L|||||F\r";
    assert_int_equal(cg_mapper_map_hl7(mp, oru, strlen(oru), &rows, &n, &me), CG_OK);
    results[0][0] = results[1][0] = '\0';
    int third = 0;
    for (size_t i = 0; i < n; i++) { /* a result of each order: HbA1c of O1, cholesterol of O2 */
        char code[32], order[32];
        fact_of(&rows[i], "measurement_source_value", code, sizeof(code));
        fact_of(&rows[i], CG_ROW_META_ORDER_ID, order, sizeof(order));
        int k = !strcmp(code, "4548-4") ? 0 : !strcmp(code, "2093-3") ? 1 : -1;
        if (k >= 0)
            snprintf(results[k], sizeof(results[k]), "%s", order);
        if (!strcmp(code, "2823-3")) { /* no placer number, no ORC: no order, not O2's */
            assert_string_equal(order, "");
            third = 1;
        }
    }
    assert_true(third);
    assert_true(results[0][0] && results[1][0]);
    assert_string_not_equal(results[0], results[1]);
    const char *cancel = "MSH|^~\\&|EPIC|HOSP|CG|RES|20240316101500||ORM^O01|M51|P|2.5.1\r"
                         "PID|1||12345^^^HOSP&1.2.3&ISO^MR||Doe^Jane||19670412|F\r"
                         "ORC|CA|O1\r"
                         "OBR|1|O1||4548-4^HbA1c^LN\r"
                         "ORC|CA|O2\r"
                         "ORC|OC||F3\r"
                         "OBR|3||F3|2345-7^Glucose^LN\r"
                         "OBX|1|NM|2345-7^Glucose^LN||99|mg/dL|||||F\r";
    assert_int_equal(cg_mapper_map_hl7(mp, cancel, strlen(cancel), &rows, &n, &me), CG_OK);
    size_t nr = 0, nd = 0;
    for (size_t i = 0; i < n; i++) {
        if (rows[i].op == CG_ROW_DELETE) { /* the filler's cancel's repeated result */
            nd++;
            continue;
        }
        assert_int_equal(rows[i].op, CG_ROW_RETRACT);
        assert_true(nr < 2);
        fact_of(&rows[i], "order_id", cancels[nr], sizeof(cancels[nr]));
        nr++;
    }
    assert_int_equal(nr, 2);
    assert_int_equal(nd, 1);
    assert_string_equal(cancels[0], results[0]);
    assert_string_equal(cancels[1], results[1]);
    /* an order that goes on (ORC-1 NW, XO...) retracts nothing */
    const char *update = "MSH|^~\\&|EPIC|HOSP|CG|RES|20240316101500||ORM^O01|M52|P|2.5.1\r"
                         "PID|1||12345^^^HOSP&1.2.3&ISO^MR||Doe^Jane||19670412|F\r"
                         "ORC|XO|O1\r"
                         "OBR|1|O1||4548-4^HbA1c^LN\r";
    assert_int_equal(cg_mapper_map_hl7(mp, update, strlen(update), &rows, &n, &me), CG_OK);
    assert_int_equal(n, 0);
    cg_mapper_destroy(mp);
    cg_specset_destroy(ss);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hl7_times),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_compile_errors_are_located_and_all_reported),
        cmocka_unit_test(test_compile_errors_more),
        cmocka_unit_test(test_oru_rows),
        cmocka_unit_test(test_required_failure_gives_no_rows),
        cmocka_unit_test(test_trace_names_rule_and_path),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_domain_routes_the_row),
        cmocka_unit_test(test_when_before_rule_lets),
        cmocka_unit_test(test_outcomes_and_no_research_content),
        cmocka_unit_test(test_foreach_pass_and_order_values),
        cmocka_unit_test(test_order_cancel_names_each_order),
    };
    return cmocka_run_group_tests(tests, spec_test_setup, spec_test_teardown);
}
