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
#include "../../mappers/spec/spec_impl.h"
#include "../../mappers/spec/spec_mapper.h"

/* The row object of r's record ("{...}" and what follows it), as the encoder writes it; four
 * buffers in turn, so that a test can hold a few at once. */
static const char *encoded(const cg_row_t *r, unsigned flags, const char *from)
{
    static cg_buf_t bufs[4];
    static unsigned next;
    cg_buf_t *b = &bufs[next++ % 4];
    cg_buf_reset(b);
    assert_int_equal(cg_row_encode(r, NULL, NULL, 0, flags, b), CG_OK);
    const char *p = strstr(b->data, from);
    assert_non_null(p);
    return p + strlen(from);
}

static const char *row_json(const cg_row_t *r)
{
    return encoded(r, 0, ",\"row\":");
}

static const char *row_trace(const cg_row_t *r)
{
    return encoded(r, CG_ROW_ENCODE_TRACE, ",\"trace\":");
}

static cg_pseudo_t *pseudo;
static cg_vocab_t *vocab;

static int setup(void **state)
{
    (void)state;
    char err[256];
    cg_pseudo_key_t *k =
        cg_pseudo_key_new("0123456789abcdef0123456789abcdef", 32, err, sizeof(err));
    pseudo = cg_pseudo_new(k, 0, err, sizeof(err));
    cg_pseudo_key_destroy(k);
    vocab = cg_vocab_new();
    size_t n = 0;
    cg_vocab_load_csv_dir(vocab, CG_TEST_FIXTURES "/spec/vocab", NULL, 0, &n);
    return pseudo && vocab && n == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    cg_pseudo_destroy(pseudo);
    cg_vocab_destroy(vocab);
    return 0;
}

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
    assert_non_null(strstr(errs[3].text, "'measurment'"));
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

/* What the test compares of each row: its rule, id, op and meta order_datetime. */
static size_t rows_seen(cg_mapper_t *mp, const char *msg, row_seen_t *out, size_t max)
{
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    assert_int_equal(cg_mapper_map_hl7(mp, msg, strlen(msg), &rows, &n, &me), CG_OK);
    assert_true(n <= max);
    for (size_t i = 0; i < n; i++) {
        const cg_value_t *id = &rows[i].values[0]; /* the tables' first column is their key */
        snprintf(out[i].rule, sizeof(out[i].rule), "%s", rows[i].rule);
        snprintf(out[i].id, sizeof(out[i].id), "%.*s", (int)id->len, id->ptr);
        out[i].op = rows[i].op;
        out[i].when[0] = '\0';
        for (size_t k = 0; k < rows[i].n_meta; k++)
            if (!strcmp(rows[i].meta[k].name, "order_datetime"))
                snprintf(out[i].when, sizeof(out[i].when), "%.*s", (int)rows[i].meta[k].value.len,
                         rows[i].meta[k].value.ptr);
    }
    return n;
}

static void test_foreach_pass_and_order_values(void **state)
{
    (void)state;
    cg_specset_t *ss;
    cg_mapper_t *mp = oru_mapper(&ss);
    row_seen_t all[16], one[16], two[16];
    size_t n = rows_seen(mp, ORU2_HEAD ORU2_ORDER1 ORU2_ORDER2, all, 16);
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
    assert_non_null(strstr(t0, "\"source\":\"when\",\"steps\":\"when: order_time: coalesce: "
                               "branch 1 of 2 (OBR-7); coalesce: branch 2 of 2 (order_time)\""));
    const char *t1 = row_trace(&rows[1]);
    assert_non_null(strstr(t1, "\"steps\":\"when: coalesce: branch 1 of 2 (OBX-14)\""));
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
    cg_error_t errs[8];
    size_t ne = 0;
    cg_spec_env_t env = {.vocab = vocab, .pseudo = pseudo};
    cg_specset_t *ss = cg_specset_load_string(spec, "when-first.json", &env, errs, 8, &ne);
    for (size_t i = 0; i < ne && i < 8; i++)
        fprintf(stderr, "%d:%d: %s\n", errs[i].line, errs[i].column, errs[i].text);
    assert_non_null(ss);
    assert_int_equal(ne, 0);
    char err[256];
    cg_mapper_t *mp = cg_mapper_new(ss, &env, err, sizeof(err));
    assert_non_null(mp);
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

/* Rules over the same segments in one pass read a guard's path once an item for the rules whose
 * guards read it (cg_spec_hl7_run_rules): each rule still takes exactly the items its own "when"
 * holds for, a guard on another path in between included, as when each rule runs alone. */
static void test_guards_share_a_read(void **state)
{
    (void)state;
#define GUARD_COLS                                                                                 \
    "   \"columns\": {\"person_id\": {\"patient\": \"person_id\"},\n"                              \
    "     \"measurement_concept_id\": 0, \"measurement_type_concept_id\": 32817,\n"                \
    "     \"measurement_date\": {\"path\": \"OBX-14\", \"pipe\": [\"date\"]},\n"                   \
    "     \"measurement_datetime\": {\"path\": \"OBX-14\", \"pipe\": [\"datetime\"]},\n"           \
    "     \"value_as_number\": \"OBX-4\"}}"
    const char *rules[] = {
        "  {\"name\": \"nm\", \"table\": \"measurement\", \"foreach\": \"OBX[*]\",\n"
        "   \"when\": {\"in\": [\"OBX-2\", [\"NM\"]]},\n" GUARD_COLS,
        "  {\"name\": \"final\", \"table\": \"measurement\", \"foreach\": \"OBX[*]\",\n"
        "   \"when\": {\"in\": [\"OBX-11\", [\"F\"]]},\n" GUARD_COLS,
        "  {\"name\": \"x\", \"table\": \"measurement\", \"foreach\": \"OBX[*]\",\n"
        "   \"when\": {\"all\": [{\"in\": [\"OBX-2\", [\"ST\", \"NM\"]]},\n"
        "                       {\"eq\": [\"OBX-5\", {\"const\": \"x\"}]}]},\n" GUARD_COLS,
        "  {\"name\": \"st\", \"table\": \"measurement\", \"foreach\": \"OBX[*]\",\n"
        "   \"when\": {\"in\": [\"OBX-2\", [\"ST\"]]},\n" GUARD_COLS,
    };
#undef GUARD_COLS
    const char *msg = "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|M60|P|2.5.1\r"
                      "PID|1||777^^^HOSP^MR\r"
                      "OBX|1|NM|4548-4^HbA1c^LN|1|x|%|||||F|||20240314093000\r"
                      "OBX|2|ST|8251-1^Note^LN|2|x||||||P|||20240314093000\r"
                      "OBX|3|CE|5778-6^Color^LN|3|y||||||F|||20240315080000\r";
    /* every rule in one spec (one pass), and each rule in a spec of its own */
    char text[8192];
    int o = snprintf(text, sizeof(text),
                     "{\"spec\": \"guards\", \"version\": 1,\n"
                     " \"input\": {\"format\": \"hl7v2\", \"messages\": [\"ORU^R01\"]},\n"
                     " \"patient\": {\"id\": \"PID-3.1\", \"authority\": \"PID-3.4.1\"},\n"
                     " \"rules\": [\n");
    for (size_t i = 0; i < 4; i++)
        o += snprintf(text + o, sizeof(text) - (size_t)o, "%s%s", i ? ",\n" : "", rules[i]);
    snprintf(text + o, sizeof(text) - (size_t)o, "]}\n");
    cg_error_t errs[8];
    size_t ne = 0;
    cg_spec_env_t env = {.vocab = vocab, .pseudo = pseudo};
    cg_specset_t *ss = cg_specset_load_string(text, "guards.json", &env, errs, 8, &ne);
    assert_non_null(ss);
    assert_int_equal(ne, 0);
    assert_int_equal(ss->specs[0].rules[0].fuse_n, 4); /* the four in one pass */
    /* the guards on OBX-2 (rules 0, 2 and 3) as one table; rule 1's on OBX-11 apart */
    assert_non_null(ss->specs[0].rules[0].fuse_tab);
    assert_int_equal(ss->specs[0].rules[0].fuse_tab->rules, 0xD);
    char err[256];
    cg_mapper_t *mp = cg_mapper_new(ss, &env, err, sizeof(err));
    assert_non_null(mp);
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    cg_err_t mrc = cg_mapper_map_hl7(mp, msg, strlen(msg), &rows, &n, &me);
    if (mrc)
        fprintf(stderr, "%s: %s %s: %s\n", me.stage, me.rule, me.out_column, me.text);
    assert_int_equal(mrc, CG_OK);
    static const char *want_rule[] = {"nm", "final", "final", "x", "x", "st"};
    static const char *want_sub[] = {"1", "1", "3", "1", "2", "2"};
    static const char *want_time[] = {"2024-03-14T09:30:00", "2024-03-14T09:30:00",
                                      "2024-03-15T08:00:00", "2024-03-14T09:30:00",
                                      "2024-03-14T09:30:00", "2024-03-14T09:30:00"};
    assert_int_equal(n, 6);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(rows[i].rule, want_rule[i]);
        const cg_value_t *v = cg_row_value_named(&rows[i], "value_as_number");
        assert_int_equal(v->len, 1);
        assert_memory_equal(v->ptr, want_sub[i], 1);
        v = cg_row_value_named(&rows[i], "measurement_datetime");
        assert_int_equal(v->len, strlen(want_time[i]));
        assert_memory_equal(v->ptr, want_time[i], v->len);
        v = cg_row_value_named(&rows[i], "measurement_date");
        assert_int_equal(v->kind, CG_VALUE_DATE);
        assert_memory_equal(v->ptr, want_time[i], 10);
    }
    /* each rule alone (no pass, no shared read): the same rows */
    for (size_t k = 0; k < 4; k++) {
        char one[4096];
        snprintf(one, sizeof(one),
                 "{\"spec\": \"guards\", \"version\": 1,\n"
                 " \"input\": {\"format\": \"hl7v2\", \"messages\": [\"ORU^R01\"]},\n"
                 " \"patient\": {\"id\": \"PID-3.1\", \"authority\": \"PID-3.4.1\"},\n"
                 " \"rules\": [\n%s]}\n",
                 rules[k]);
        cg_specset_t *ss1 = cg_specset_load_string(one, "guard.json", &env, errs, 8, &ne);
        assert_non_null(ss1);
        assert_int_equal(ss1->specs[0].rules[0].fuse_n, 0);
        cg_mapper_t *mp1 = cg_mapper_new(ss1, &env, err, sizeof(err));
        assert_non_null(mp1);
        const cg_row_t *rows1;
        size_t n1;
        assert_int_equal(cg_mapper_map_hl7(mp1, msg, strlen(msg), &rows1, &n1, &me), CG_OK);
        static const char *names[] = {"nm", "final", "x", "st"};
        size_t seen = 0;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(rows[i].rule, names[k]))
                continue;
            assert_true(seen < n1);
            assert_string_equal(rows1[seen].rule, names[k]);
            assert_string_equal(row_json(&rows1[seen]), row_json(&rows[i]));
            seen++;
        }
        assert_int_equal(seen, n1);
        cg_mapper_destroy(mp1);
        cg_specset_destroy(ss1);
    }
    cg_mapper_destroy(mp);
    cg_specset_destroy(ss);
}

/* Date conversions are memoized by the value's text: equal times in different slices share one,
 * and times that agree in their first and last eight bytes (one memo slot) stay apart. */
static void test_times_by_text(void **state)
{
    (void)state;
    const char *spec =
        "{\"spec\": \"times\", \"version\": 1,\n"
        " \"input\": {\"format\": \"hl7v2\", \"messages\": [\"ORU^R01\"]},\n"
        " \"patient\": {\"id\": \"PID-3.1\", \"authority\": \"PID-3.4.1\"},\n"
        " \"rules\": [\n"
        "  {\"name\": \"t\", \"table\": \"measurement\", \"foreach\": \"OBX[*]\",\n"
        "   \"columns\": {\"person_id\": {\"patient\": \"person_id\"},\n"
        "     \"measurement_concept_id\": 0, \"measurement_type_concept_id\": 32817,\n"
        "     \"measurement_date\": {\"path\": \"OBX-14\", \"pipe\": [\"date\"]},\n"
        "     \"measurement_datetime\": {\"path\": \"OBX-14\", \"pipe\": [\"datetime\"]}}}]}\n";
    cg_error_t errs[8];
    size_t ne = 0;
    cg_spec_env_t env = {.vocab = vocab, .pseudo = pseudo};
    cg_specset_t *ss = cg_specset_load_string(spec, "times.json", &env, errs, 8, &ne);
    assert_non_null(ss);
    char err[256];
    cg_mapper_t *mp = cg_mapper_new(ss, &env, err, sizeof(err));
    assert_non_null(mp);
    const char *msg = "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|M61|P|2.5.1\r"
                      "PID|1||777^^^HOSP^MR\r"
                      "OBX|1|NM|1^A^LN||1||||||F|||20240314093000.12\r"
                      "OBX|2|NM|1^A^LN||1||||||F|||20240314193000.12\r"
                      "OBX|3|NM|1^A^LN||1||||||F|||20240314093000.12\r"
                      "OBX|4|NM|1^A^LN||1||||||F|||20240315093000.12\r";
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    assert_int_equal(cg_mapper_map_hl7(mp, msg, strlen(msg), &rows, &n, &me), CG_OK);
    assert_int_equal(n, 4);
    const cg_value_t *t[4], *d[4];
    for (size_t i = 0; i < 4; i++) {
        t[i] = cg_row_value_named(&rows[i], "measurement_datetime");
        d[i] = cg_row_value_named(&rows[i], "measurement_date");
        assert_int_equal(t[i]->kind, CG_VALUE_DATETIME);
        assert_int_equal(d[i]->kind, CG_VALUE_DATE);
        assert_true(t[i]->len > 19);
        assert_int_equal(d[i]->len, 10);
    }
    assert_memory_equal(t[0]->ptr, "2024-03-14T09:30:00", 19);
    assert_memory_equal(t[1]->ptr, "2024-03-14T19:30:00", 19);
    assert_memory_equal(t[3]->ptr, "2024-03-15T09:30:00", 19);
    assert_int_equal(t[2]->len, t[0]->len);
    assert_memory_equal(t[2]->ptr, t[0]->ptr, t[0]->len);
    assert_memory_equal(d[3]->ptr, "2024-03-15", 10);
    assert_memory_equal(d[2]->ptr, "2024-03-14", 10);
    cg_mapper_destroy(mp);
    cg_specset_destroy(ss);
}

static void assert_value(const cg_row_t *r, const char *col, const char *want)
{
    const cg_value_t *v = cg_row_value_named(r, col);
    assert_non_null(v);
    if (v->len != strlen(want) || memcmp(v->ptr, want, v->len))
        fail_msg("%s: \"%.*s\", not \"%s\"", col, (int)v->len, v->ptr, want);
}

/* Short values are checked in place a word at a time (spec_hl7_value.c): those with an escape
 * sequence or a byte above ASCII still go through the decoder, whatever their length or place
 * (the message's last bytes included), and the escape character in MSH-2 stays literal. */
static void test_short_values_decoded(void **state)
{
    (void)state;
    const char *spec =
        "{\"spec\": \"short\", \"version\": 1,\n"
        " \"input\": {\"format\": \"hl7v2\", \"messages\": [\"ORU^R01\"]},\n"
        " \"patient\": {\"id\": \"PID-3.1\", \"authority\": \"PID-3.4.1\"},\n"
        " \"rules\": [\n"
        "  {\"name\": \"s\", \"table\": \"measurement\", \"foreach\": \"OBX[*]\",\n"
        "   \"columns\": {\"person_id\": {\"patient\": \"person_id\"},\n"
        "     \"measurement_concept_id\": 0, \"measurement_type_concept_id\": 32817,\n"
        "     \"measurement_date\": {\"const\": \"2024-03-14\"},\n"
        "     \"measurement_source_value\": \"OBX-3.1\",\n"
        "     \"unit_source_value\": \"OBX-6.1\",\n"
        "     \"value_source_value\": {\"concat\": [\"MSH-2\", \"OBX-5\"], \"sep\": \" \"}}}]}\n";
    cg_error_t errs[8];
    size_t ne = 0;
    cg_spec_env_t env = {.vocab = vocab, .pseudo = pseudo};
    cg_specset_t *ss = cg_specset_load_string(spec, "short.json", &env, errs, 8, &ne);
    assert_non_null(ss);
    char err[256];
    cg_mapper_t *mp = cg_mapper_new(ss, &env, err, sizeof(err));
    assert_non_null(mp);
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    const char *utf8 = "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|M62|P|2.5.1|||||"
                       "|UNICODE UTF-8\r"
                       "PID|1||777^^^HOSP^MR\r"
                       "OBX|1|ST|A\\T\\B^x^LN||\xc3\xa9|\\S\\\r"
                       "OBX|2|ST|AB^x^LN||ab|mg\r"
                       "OBX|3|ST|\\E\\^x^LN||x|\\T\\";
    assert_int_equal(cg_mapper_map_hl7(mp, utf8, strlen(utf8), &rows, &n, &me), CG_OK);
    assert_int_equal(n, 3);
    assert_value(&rows[0], "measurement_source_value", "A&B");
    assert_value(&rows[0], "unit_source_value", "^");
    assert_value(&rows[0], "value_source_value", "^~\\& \xc3\xa9");
    assert_value(&rows[1], "measurement_source_value", "AB");
    assert_value(&rows[1], "unit_source_value", "mg");
    assert_value(&rows[1], "value_source_value", "^~\\& ab");
    assert_value(&rows[2], "measurement_source_value", "\\");
    assert_value(&rows[2], "unit_source_value", "&"); /* the message's last three bytes */
    /* Latin-1: a short value with a byte above ASCII is converted */
    const char *latin1 = "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|M63|P|2.5.1|||||"
                         "|8859/1\r"
                         "PID|1||777^^^HOSP^MR\r"
                         "OBX|1|ST|\xe9^x^LN||ok|mg\r";
    assert_int_equal(cg_mapper_map_hl7(mp, latin1, strlen(latin1), &rows, &n, &me), CG_OK);
    assert_int_equal(n, 1);
    assert_value(&rows[0], "measurement_source_value", "\xc3\xa9");
    cg_mapper_destroy(mp);
    cg_specset_destroy(ss);
}

/* Numeric columns whose values are canonical numbers already (a concept lookup, "number", a
 * person id, canonical constants and map entries) skip making them so (column_t.canon): the
 * rows are the same as with every column checked, and the others are still made canonical. */
static void test_canonical_columns(void **state)
{
    (void)state;
    const char *spec =
        "{\"spec\": \"canon\", \"version\": 1,\n"
        " \"input\": {\"format\": \"hl7v2\", \"messages\": [\"ORU^R01\"]},\n"
        " \"patient\": {\"id\": \"PID-3.1\", \"authority\": \"PID-3.4.1\"},\n"
        " \"rules\": [\n"
        "  {\"name\": \"c\", \"table\": \"measurement\", \"foreach\": \"OBX[*]\",\n"
        "   \"columns\": {\"person_id\": {\"patient\": \"person_id\"},\n"
        "     \"measurement_concept_id\": {\"path\": \"OBX-3.1\", \"pipe\": [{\"lookup\":\n"
        "       {\"vocabulary\": {\"path\": \"OBX-3.3\"}}}], \"default\": 0},\n"
        "     \"measurement_type_concept_id\": {\"const\": \"0032817\"},\n"
        "     \"measurement_date\": {\"const\": \"2024-03-14\"},\n"
        "     \"value_as_number\": {\"path\": \"OBX-5\", \"pipe\": [\"number\"]},\n"
        "     \"range_low\": {\"const\": \"4.0\"},\n"
        "     \"range_high\": {\"const\": \"5.6\"},\n"
        "     \"operator_concept_id\": {\"path\": \"OBX-8\", \"pipe\": [{\"map\":\n"
        "       {\"H\": \"007\", \"L\": \"4171756\"}}]},\n"
        "     \"unit_concept_id\": {\"path\": \"OBX-6.1\", \"pipe\": [{\"map\":\n"
        "       {\"%\": \"8554\", \"*\": null}}]},\n"
        "     \"measurement_source_concept_id\": {\"if\": {\"present\": \"OBX-4\"},\n"
        "       \"then\": {\"const\": \"12\"}, \"else\": {\"const\": \"-3\"}},\n"
        "     \"value_as_concept_id\": {\"path\": \"OBX-4\", \"pipe\": [\"number\"]}}}]}\n";
    cg_error_t errs[8];
    size_t ne = 0;
    cg_spec_env_t env = {.vocab = vocab, .pseudo = pseudo};
    cg_specset_t *ss = cg_specset_load_string(spec, "canon.json", &env, errs, 8, &ne);
    assert_non_null(ss);
    rule_t *r = &ss->specs[0].rules[0];
    static const struct {
        const char *col;
        int canon;
    } want[] = {
        {"person_id", COL_CANON_INT},
        {"measurement_concept_id", COL_CANON_INT},
        {"measurement_type_concept_id", COL_CANON_NONE}, /* "0032817" */
        {"value_as_number", COL_CANON_NUM},
        {"range_low", COL_CANON_NONE}, /* "4.0" */
        {"range_high", COL_CANON_NUM},
        {"operator_concept_id", COL_CANON_NONE}, /* "007" */
        {"unit_concept_id", COL_CANON_INT},
        {"measurement_source_concept_id", COL_CANON_INT},
        {"value_as_concept_id", COL_CANON_NONE}, /* a decimal into an integer column */
        {"measurement_date", COL_CANON_NONE},
    };
    for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++) {
        size_t i = 0;
        while (i < r->n_columns && strcmp(r->columns[i].col->name, want[k].col))
            i++;
        assert_true(i < r->n_columns);
        if (r->columns[i].canon != want[k].canon)
            fail_msg("%s: canon %d, not %d", want[k].col, r->columns[i].canon, want[k].canon);
    }
    const char *msg = "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|M64|P|2.5.1\r"
                      "PID|1||777^^^HOSP^MR\r"
                      "OBX|1|NM|4548-4^HbA1c^LN|01|7.50|%||H\r"
                      "OBX|2|NM|0000-0^None^LN||0042|mg||L\r";
    char fast[2][2048], slow[2][2048];
    for (int pass = 0; pass < 2; pass++) {
        if (pass) /* every column the general way */
            for (size_t i = 0; i < r->n_columns; i++)
                r->columns[i].canon = COL_CANON_NONE;
        char err[256];
        cg_mapper_t *mp = cg_mapper_new(ss, &env, err, sizeof(err));
        assert_non_null(mp);
        const cg_row_t *rows;
        size_t n;
        cg_error_t me;
        cg_err_t rc = cg_mapper_map_hl7(mp, msg, strlen(msg), &rows, &n, &me);
        if (rc)
            fprintf(stderr, "%s: %s %s: %s\n", me.stage, me.rule, me.out_column, me.text);
        assert_int_equal(rc, CG_OK);
        assert_int_equal(n, 2);
        for (size_t i = 0; i < 2; i++)
            snprintf(pass ? slow[i] : fast[i], sizeof(fast[i]), "%s", row_json(&rows[i]));
        if (!pass) {
            assert_value(&rows[0], "measurement_concept_id", "3004410");
            assert_value(&rows[0], "measurement_type_concept_id", "32817");
            assert_value(&rows[0], "value_as_number", "7.5");
            assert_value(&rows[0], "range_low", "4");
            assert_value(&rows[0], "range_high", "5.6");
            assert_value(&rows[0], "operator_concept_id", "7");
            assert_value(&rows[0], "unit_concept_id", "8554");
            assert_value(&rows[0], "measurement_source_concept_id", "12");
            assert_value(&rows[1], "measurement_concept_id", "0");
            assert_value(&rows[1], "value_as_number", "42");
            assert_value(&rows[0], "value_as_concept_id", "1");
            assert_value(&rows[1], "operator_concept_id", "4171756");
            assert_value(&rows[1], "measurement_source_concept_id", "-3");
            assert_int_equal(cg_row_value_named(&rows[1], "unit_concept_id")->kind, CG_VALUE_NULL);
        }
        cg_mapper_destroy(mp);
    }
    assert_string_equal(fast[0], slow[0]);
    assert_string_equal(fast[1], slow[1]);
    cg_specset_destroy(ss);
}

/* Anchored values (an OBX's order's fields) are read at the place found from the previous
 * row's (spec_hl7_value.c): the same as with --trace, which finds every place afresh, for a
 * result before any order (the first one after), orders in turn, and a gap of many segments. */
static void test_anchored_places(void **state)
{
    (void)state;
    const char *spec =
        "{\"spec\": \"places\", \"version\": 1,\n"
        " \"input\": {\"format\": \"hl7v2\", \"messages\": [\"ORU^R01\"]},\n"
        " \"patient\": {\"id\": \"PID-3.1\", \"authority\": \"PID-3.4.1\"},\n"
        " \"rules\": [\n"
        "  {\"name\": \"p\", \"table\": \"measurement\", \"foreach\": \"OBX[*]\",\n"
        "   \"columns\": {\"person_id\": {\"patient\": \"person_id\"},\n"
        "     \"measurement_concept_id\": 0, \"measurement_type_concept_id\": 32817,\n"
        "     \"measurement_date\": {\"const\": \"2024-03-14\"},\n"
        "     \"measurement_source_value\": {\"path\": \"OBR-3.1\", \"pipe\": [\"trim\"]},\n"
        "     \"value_source_value\": {\"path\": \"ORC-1\", \"pipe\": [\"trim\"]},\n"
        "     \"unit_source_value\": \"OBX-1\"}}]}\n";
    cg_error_t errs[8];
    size_t ne = 0;
    cg_spec_env_t env = {.vocab = vocab, .pseudo = pseudo};
    cg_specset_t *ss = cg_specset_load_string(spec, "places.json", &env, errs, 8, &ne);
    assert_non_null(ss);
    const rule_t *r = &ss->specs[0].rules[0];
    size_t anchored = 0;
    for (size_t i = 0; i < r->n_columns; i++)
        anchored += r->columns[i].expr->anchor_id != 0;
    assert_int_equal(anchored, 2); /* OBR-3.1 and ORC-1, read at the OBX's order */
    char msg[4096];
    int o = snprintf(msg, sizeof(msg),
                     "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|M65|P|2.5.1\r"
                     "PID|1||777^^^HOSP^MR\r"
                     "OBX|1|NM|1^A^LN||1\r"
                     "ORC|NW\r"
                     "OBR|1||F1\r"
                     "OBX|2|NM|1^A^LN||1\r"
                     "NTE|1||n\r"
                     "OBX|3|NM|1^A^LN||1\r"
                     "ORC|CA\r"
                     "OBR|2||F2\r"
                     "OBX|4|NM|1^A^LN||1\r"
                     "OBX|5|NM|1^A^LN||1\r");
    for (int i = 0; i < 20; i++)
        o += snprintf(msg + o, sizeof(msg) - (size_t)o, "NTE|%d||gap\r", i + 2);
    snprintf(msg + o, sizeof(msg) - (size_t)o,
             "OBX|6|NM|1^A^LN||1\r"
             "ORC|XO\r"
             "OBR|3||F3\r"
             "OBX|7|NM|1^A^LN||1\r");
    static const char *want_obr[] = {"F1", "F1", "F1", "F2", "F2", "F2", "F3"};
    static const char *want_orc[] = {"NW", "NW", "NW", "CA", "CA", "CA", "XO"};
    char seen[2][7][64];
    for (int trace = 0; trace < 2; trace++) {
        char err[256];
        cg_mapper_t *mp = cg_mapper_new(ss, &env, err, sizeof(err));
        assert_non_null(mp);
        cg_mapper_set_trace(mp, trace); /* traced: every place found afresh */
        const cg_row_t *rows;
        size_t n;
        cg_error_t me;
        assert_int_equal(cg_mapper_map_hl7(mp, msg, strlen(msg), &rows, &n, &me), CG_OK);
        assert_int_equal(n, 7);
        for (size_t i = 0; i < n; i++) {
            assert_value(&rows[i], "measurement_source_value", want_obr[i]);
            assert_value(&rows[i], "value_source_value", want_orc[i]);
            snprintf(seen[trace][i], sizeof(seen[trace][i]), "%s", row_json(&rows[i]));
        }
        cg_mapper_destroy(mp);
    }
    for (size_t i = 0; i < 7; i++)
        assert_string_equal(seen[0][i], seen[1][i]);
    cg_specset_destroy(ss);
}

/* A regex is not run on a value without the byte every match holds (cg_spec_regex_need): such
 * a value never matches, and the byte is only one no case folding could stand in for. */
static void test_regex_needed_byte(void **state)
{
    (void)state;
    static const struct {
        const char *pattern;
        int need; /* -2: any answer, checked for soundness only */
    } pats[] = {
        {"^\\s*([-+]?[0-9]*\\.?[0-9]+)\\s*-", '-'},
        {"-\\s*([-+]?[0-9]*\\.?[0-9]+)\\s*$", '-'},
        {"[0-9]+", -1},
        {"(?i)ab", -1},
        {"(?i:a)x", -1},
        {"a|-", -1},
        {"x:y", -2},
        {"(?i)\\x{e9}t", -2},
        {"(?<=-)[0-9]", -2},
    };
    static const char *values[] = {"4.0-5.6",   "<5.0",      "abc", "AB", "Ax", "x:y",
                                   "\xc3\x89T", "\xc3\xa9t", "-1",  "1",  "",   "X:Y"};
    pcre2_match_data *md = pcre2_match_data_create(8, NULL);
    assert_non_null(md);
    for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++) {
        int code;
        PCRE2_SIZE off;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)pats[i].pattern, PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF, &code, &off, NULL);
        assert_non_null(re);
        int need = cg_spec_regex_need(re);
        if (pats[i].need != -2 && need != pats[i].need)
            fail_msg("%s: needs %d, not %d", pats[i].pattern, need, pats[i].need);
        for (size_t k = 0; k < sizeof(values) / sizeof(values[0]); k++) {
            size_t n = strlen(values[k]);
            int m = pcre2_match(re, (PCRE2_SPTR)values[k], n, 0, 0, md, NULL);
            if (!cg_spec_regex_may_match(need, values[k], n) && m != PCRE2_ERROR_NOMATCH)
                fail_msg("%s matches \"%s\" without byte %d", pats[i].pattern, values[k], need);
        }
        pcre2_code_free(re);
    }
    pcre2_match_data_free(md);
}

/* Lookups resolve a message's coding-system name once per name text (spec_eval.c): the same
 * concepts as cg_vocab_lookup_system for each spelling, OIDs longer than the memo's names,
 * unknown names taken as vocabulary ids, and names that share a memo slot in turn. */
static void test_lookup_systems(void **state)
{
    (void)state;
    const char *spec =
        "{\"spec\": \"systems\", \"version\": 1,\n"
        " \"input\": {\"format\": \"hl7v2\", \"messages\": [\"ORU^R01\"]},\n"
        " \"patient\": {\"id\": \"PID-3.1\", \"authority\": \"PID-3.4.1\"},\n"
        " \"rules\": [\n"
        "  {\"name\": \"s\", \"table\": \"measurement\", \"foreach\": \"OBX[*]\",\n"
        "   \"columns\": {\"person_id\": {\"patient\": \"person_id\"},\n"
        "     \"measurement_concept_id\": {\"path\": \"OBX-3.1\", \"pipe\": [{\"lookup\":\n"
        "       {\"vocabulary\": {\"path\": \"OBX-3.3\"}}}], \"default\": 0},\n"
        "     \"measurement_type_concept_id\": 32817,\n"
        "     \"measurement_date\": {\"const\": \"2024-03-14\"}}}]}\n";
    /* "LX": LN's memo slot, and no system: taken as a vocabulary id */
    static const char *systems[] = {
        "LN", "LX", "ln", "LOINC", "urn:oid:2.16.840.1.113883.6.1", "2.16.840.1.113883.6.1", "XYZ",
        "LN", "NL", "lN", "SCT"};
    const size_t n_sys = sizeof(systems) / sizeof(systems[0]);
    cg_error_t errs[8];
    size_t ne = 0;
    cg_spec_env_t env = {.vocab = vocab, .pseudo = pseudo};
    cg_specset_t *ss = cg_specset_load_string(spec, "systems.json", &env, errs, 8, &ne);
    assert_non_null(ss);
    char err[256];
    cg_mapper_t *mp = cg_mapper_new(ss, &env, err, sizeof(err));
    assert_non_null(mp);
    for (int round = 0; round < 2; round++) { /* the second finds the names remembered */
        char msg[4096];
        int o = snprintf(msg, sizeof(msg),
                         "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|M66|P|2.5.1\r"
                         "PID|1||777^^^HOSP^MR\r");
        for (size_t i = 0; i < n_sys; i++)
            o += snprintf(msg + o, sizeof(msg) - (size_t)o, "OBX|%zu|NM|4548-4^HbA1c^%s||1\r",
                          i + 1, systems[round ? n_sys - 1 - i : i]);
        const cg_row_t *rows;
        size_t n;
        cg_error_t me;
        assert_int_equal(cg_mapper_map_hl7(mp, msg, strlen(msg), &rows, &n, &me), CG_OK);
        assert_int_equal(n, n_sys);
        for (size_t i = 0; i < n; i++) {
            const char *sys = systems[round ? n_sys - 1 - i : i];
            cg_vocab_hit_t hit;
            int found = cg_vocab_lookup_system(vocab, (cg_slice_t){sys, strlen(sys)},
                                               CG_SLICE_LIT("4548-4"), &hit);
            char want[24];
            snprintf(want, sizeof(want), "%d", found ? (int)hit.concept_id : 0);
            assert_value(&rows[i], "measurement_concept_id", want);
        }
    }
    cg_mapper_destroy(mp);
    cg_specset_destroy(ss);
}

/* cg_spec_same against memcmp: every length to 40, equal and with one byte different at each
 * place; exact-size buffers, so that a read past either end shows under the sanitizers. */
static void test_same_text(void **state)
{
    (void)state;
    for (size_t n = 0; n <= 40; n++) {
        char *a = malloc(n ? n : 1), *b = malloc(n ? n : 1);
        assert_true(a && b);
        for (size_t i = 0; i < n; i++)
            a[i] = b[i] = (char)('0' + i % 10);
        assert_true(cg_spec_same(a, b, n));
        for (size_t at = 0; at < n; at++) {
            b[at] ^= 0x40;
            assert_false(cg_spec_same(a, b, n));
            b[at] ^= 0x40;
        }
        free(a);
        free(b);
    }
}

/* Anchored expressions the same in two rules share one memo id (spec_prepare.c): one rule's
 * value at an order is the other's; expressions that differ in a transform keep their own. */
static void test_anchored_shared(void **state)
{
    (void)state;
#define SHARED_RULE(name, second)                                                                  \
    "  {\"name\": \"" name "\", \"table\": \"measurement\", \"foreach\": \"OBX[*]\",\n"            \
    "   \"columns\": {\"person_id\": {\"patient\": \"person_id\"},\n"                              \
    "     \"measurement_concept_id\": 0, \"measurement_type_concept_id\": 32817,\n"                \
    "     \"measurement_date\": {\"const\": \"2024-03-14\"},\n"                                    \
    "     \"measurement_source_value\": {\"path\": \"OBR-3.1\", \"pipe\": [\"trim\"]},\n"          \
    "     \"value_source_value\": {\"path\": \"OBR-3.1\", \"pipe\": [\"" second "\"]}}}"
    const char *spec =
        "{\"spec\": \"shared\", \"version\": 1,\n"
        " \"input\": {\"format\": \"hl7v2\", \"messages\": [\"ORU^R01\"]},\n"
        " \"patient\": {\"id\": \"PID-3.1\", \"authority\": \"PID-3.4.1\"},\n"
        " \"rules\": [\n" SHARED_RULE("up", "upper") ",\n" SHARED_RULE("low", "lower") "]}\n";
#undef SHARED_RULE
    cg_error_t errs[8];
    size_t ne = 0;
    cg_spec_env_t env = {.vocab = vocab, .pseudo = pseudo};
    cg_specset_t *ss = cg_specset_load_string(spec, "shared.json", &env, errs, 8, &ne);
    assert_non_null(ss);
    const expr_t *e[2][2] = {{NULL, NULL}, {NULL, NULL}};
    for (int k = 0; k < 2; k++) {
        const rule_t *r = &ss->specs[0].rules[k];
        for (size_t i = 0; i < r->n_columns; i++) {
            if (!strcmp(r->columns[i].col->name, "measurement_source_value"))
                e[k][0] = r->columns[i].expr;
            if (!strcmp(r->columns[i].col->name, "value_source_value"))
                e[k][1] = r->columns[i].expr;
        }
    }
    assert_true(e[0][0] && e[0][1] && e[1][0] && e[1][1]);
    assert_true(e[0][0]->anchor_id && e[0][1]->anchor_id && e[1][1]->anchor_id);
    assert_int_equal(e[0][0]->anchor_id, e[1][0]->anchor_id);     /* trim, trim: one id */
    assert_int_not_equal(e[0][1]->anchor_id, e[1][1]->anchor_id); /* upper, lower: two */
    assert_int_not_equal(e[0][0]->anchor_id, e[0][1]->anchor_id);
    char err[256];
    cg_mapper_t *mp = cg_mapper_new(ss, &env, err, sizeof(err));
    assert_non_null(mp);
    const char *msg = "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|M67|P|2.5.1\r"
                      "PID|1||777^^^HOSP^MR\r"
                      "OBR|1||Fa1 \r"
                      "OBX|1|NM|1^A^LN||1\r"
                      "OBX|2|NM|1^A^LN||1\r"
                      "OBR|2||Gb2\r"
                      "OBX|3|NM|1^A^LN||1\r";
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    assert_int_equal(cg_mapper_map_hl7(mp, msg, strlen(msg), &rows, &n, &me), CG_OK);
    assert_int_equal(n, 6);
    static const char *want_src[] = {"Fa1", "Fa1", "Gb2", "Fa1", "Fa1", "Gb2"};
    static const char *want_val[] = {"FA1 ", "FA1 ", "GB2", "fa1 ", "fa1 ", "gb2"};
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(rows[i].rule, i < 3 ? "up" : "low");
        assert_value(&rows[i], "measurement_source_value", want_src[i]);
        assert_value(&rows[i], "value_source_value", want_val[i]);
    }
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
        cmocka_unit_test(test_guards_share_a_read),
        cmocka_unit_test(test_times_by_text),
        cmocka_unit_test(test_short_values_decoded),
        cmocka_unit_test(test_canonical_columns),
        cmocka_unit_test(test_anchored_places),
        cmocka_unit_test(test_regex_needed_byte),
        cmocka_unit_test(test_lookup_systems),
        cmocka_unit_test(test_same_text),
        cmocka_unit_test(test_anchored_shared),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
