/* test_spec_entry.c - entry-level isolation (a spec's "on_error"): a C-CDA document with one bad
 * entry maps its other entries and reports one value-free quality finding under "entry" (the
 * XML default), and fails whole under "message"; an HL7 v2 spec may opt in per segment; a bad
 * on_error value is a located compile error. */
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
#include "test_hl7_util.h"

static cg_pseudo_t *pseudo;
static cg_vocab_t *vocab;
static cg_spec_env_t env;

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
    cg_vocab_load_csv_dir(vocab, CG_SOURCE_DIR "/specs/vocab", NULL, 0, &n);
    env = (cg_spec_env_t){.vocab = vocab, .pseudo = pseudo};
    return pseudo && vocab && n == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    cg_pseudo_destroy(pseudo);
    cg_vocab_destroy(vocab);
    return 0;
}

/* A shipped spec's text, with on_error set (NULL: as shipped). */
static cg_specset_t *load_spec(const char *file, const char *on_error)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/specs/%s", CG_SOURCE_DIR, file);
    size_t len;
    char *text = th_read(path, &len);
    assert_non_null(text);
    char *with = NULL;
    const char *brace = strchr(text, '{');
    assert_non_null(brace);
    if (on_error)
        assert_true(asprintf(&with, "{\"on_error\": \"%s\",%s", on_error, brace + 1) > 0);
    cg_error_t errs[4];
    size_t n = 0;
    cg_specset_t *ss = cg_specset_load_string(with ? with : text, file, &env, errs, 4, &n);
    if (!ss)
        fail_msg("%s:%d:%d: %s", errs[0].file, errs[0].line, errs[0].column, errs[0].text);
    free(with);
    free(text);
    return ss;
}

/* Two problems (the first with a malformed date) and two encounters (the second with the
 * Transfer Summary's 200130212). */
static const char *DOC =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<ClinicalDocument xmlns=\"urn:hl7-org:v3\" "
    "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n"
    "<templateId root=\"2.16.840.1.113883.10.20.22.1.2\"/>\n"
    "<id root=\"1.2.3\" extension=\"DOC-77\"/><effectiveTime value=\"20240101\"/>\n"
    "<recordTarget><patientRole><id root=\"1.2.3.9\" extension=\"MRN-SECRET-42\"/>"
    "<patient><birthTime value=\"1980\"/></patient></patientRole></recordTarget>\n"
    "<component><structuredBody><component><section>\n"
    "<templateId root=\"2.16.840.1.113883.10.20.22.2.5.1\"/>\n"
    "<entry><act classCode=\"ACT\" moodCode=\"EVN\"><entryRelationship typeCode=\"SUBJ\">\n"
    "<observation classCode=\"OBS\" moodCode=\"EVN\">"
    "<templateId root=\"2.16.840.1.113883.10.20.22.4.4\"/>\n"
    "<effectiveTime><low value=\"20230405\"/></effectiveTime>"
    "<value xsi:type=\"CD\" code=\"38341003\" codeSystem=\"2.16.840.1.113883.6.96\"/>\n"
    "</observation></entryRelationship></act></entry>\n"
    "</section></component><component><section>\n"
    "<templateId root=\"2.16.840.1.113883.10.20.22.2.22.1\"/>\n"
    "<entry><encounter classCode=\"ENC\" moodCode=\"EVN\"><id root=\"2.999.7\" extension=\"V1\"/>"
    "<code code=\"99213\" codeSystem=\"2.16.840.1.113883.6.12\"/>"
    "<effectiveTime value=\"20230405\"/></encounter></entry>\n"
    "<entry><encounter classCode=\"ENC\" moodCode=\"EVN\"><id root=\"2.999.7\" extension=\"V2\"/>"
    "<code code=\"99213\" codeSystem=\"2.16.840.1.113883.6.12\"/>\n"
    "<effectiveTime value=\"200130212\"/></encounter></entry>\n"
    "<entry><encounter classCode=\"ENC\" moodCode=\"EVN\"><id root=\"2.999.7\" extension=\"V3\"/>"
    "<code code=\"99214\" codeSystem=\"2.16.840.1.113883.6.12\"/>"
    "<effectiveTime value=\"20230601\"/></encounter></entry>\n"
    "</section></component></structuredBody></component>\n"
    "</ClinicalDocument>\n";

/* s with its first from replaced by to (malloc'd). */
static char *replace(const char *s, const char *from, const char *to)
{
    const char *at = strstr(s, from);
    assert_non_null(at);
    char *out = NULL;
    assert_true(asprintf(&out, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from)) > 0);
    return out;
}

static size_t count_table(const cg_row_t *rows, size_t n, const char *table)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += !strcmp(rows[i].table->name, table);
    return k;
}

static void test_ccda_bad_entry_is_left_out(void **state)
{
    (void)state;
    cg_specset_t *ss = load_spec("cda-ccda-omop.json", NULL); /* "entry", the XML default */
    char err[256];
    cg_mapper_t *mp = cg_mapper_new(ss, &env, err, sizeof(err));
    assert_non_null(mp);
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    assert_int_equal(cg_mapper_map_xml(mp, DOC, strlen(DOC), &rows, &n, &me), CG_OK);
    assert_int_equal(me.code, CG_OK); /* the entry's failure does not linger as the error */
    /* the person, the problem and two of three encounters */
    assert_int_equal(count_table(rows, n, "person"), 1);
    assert_int_equal(count_table(rows, n, "condition_occurrence"), 1);
    assert_int_equal(count_table(rows, n, "visit_occurrence"), 2);
    /* the encounters before and after the bad one: V1 (99213) and V3 (99214) */
    int seen = 0;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(rows[i].table->name, "visit_occurrence")) {
            const cg_value_t *v = cg_row_value_named(&rows[i], "visit_source_value");
            seen |= v->len == 5 && !memcmp(v->ptr, "99213", 5)   ? 1
                    : v->len == 5 && !memcmp(v->ptr, "99214", 5) ? 2
                                                                 : 4;
        }
    assert_int_equal(seen, 3);
    const cg_quality_t *q;
    assert_int_equal(cg_mapper_quality(mp, &q), 1);
    assert_string_equal(q->stage, "map");
    assert_string_equal(q->spec, "cda-ccda-omop");
    assert_string_equal(q->rule, "encounters");
    assert_string_equal(q->column, "visit_start_date");
    assert_string_equal(q->reason, "invalid_datetime");
    assert_int_equal(q->code, CG_ERR_MAP);
    assert_int_equal(q->entry, 2);
    assert_string_equal(q->xpath, "/ClinicalDocument/component/structuredBody/component[2]/"
                                  "section/entry[2]/encounter");
    assert_int_equal(q->line, 15); /* the <encounter> start tag */
    assert_int_equal(q->segment, 0);

    /* the record: every field a reader needs, and nothing of the patient or the value */
    cg_buf_t b;
    cg_buf_init(&b);
    cg_row_source_t src = {"hosp.raw", 3, 118};
    assert_int_equal(cg_quality_encode(q, &src, &b), CG_OK);
    cg_buf_putc(&b, '\0');
    const char *want[] = {"\"kind\":\"quality\"",
                          "\"stage\":\"map\"",
                          "\"spec\":\"cda-ccda-omop\"",
                          "\"rule\":\"encounters\"",
                          "\"column\":\"visit_start_date\"",
                          "\"reason\":\"invalid_datetime\"",
                          "\"line\":15",
                          "\"position\":2",
                          "\"topic\":\"hosp.raw\"",
                          "\"offset\":118"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(b.data, want[i]))
            fail_msg("%s not in %s", want[i], b.data);
    const char *never[] = {"200130212", "MRN-SECRET-42", "DOC-77",
                           "V2",        "1980",          rows[0].person_key.ptr};
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++)
        if (strstr(b.data, never[i]))
            fail_msg("%s leaks into the quality record %s", never[i], b.data);
    char line[1536];
    cg_quality_format(q, line, sizeof(line));
    assert_non_null(strstr(line, "rule encounters, column visit_start_date, entry 2 at "));
    assert_non_null(strstr(line, "(line 15): left out: invalid_datetime"));
    assert_null(strstr(line, "200130212"));
    cg_buf_free(&b);

    /* a good document after it: no findings carried over; a document that does not decode has
     * none either */
    char *good = replace(DOC, "200130212", "20010302");
    assert_int_equal(cg_mapper_map_xml(mp, good, strlen(good), &rows, &n, &me), CG_OK);
    assert_int_equal(count_table(rows, n, "visit_occurrence"), 3);
    assert_int_equal(cg_mapper_quality(mp, &q), 0);
    free(good);
    assert_int_equal(cg_mapper_map_xml(mp, DOC, strlen(DOC), &rows, &n, &me), CG_OK);
    assert_int_equal(cg_mapper_quality(mp, &q), 1);
    assert_int_not_equal(cg_mapper_map_xml(mp, "<a>", 3, &rows, &n, &me), CG_OK);
    assert_int_equal(cg_mapper_quality(mp, &q), 0);
    cg_mapper_destroy(mp);
    cg_specset_destroy(ss);
}

static void test_ccda_on_error_message_fails_the_document(void **state)
{
    (void)state;
    cg_specset_t *ss = load_spec("cda-ccda-omop.json", "message");
    char err[256];
    cg_mapper_t *mp = cg_mapper_new(ss, &env, err, sizeof(err));
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    /* today's all-or-nothing: the document goes to the dead-letter topic, no rows */
    assert_int_equal(cg_mapper_map_xml(mp, DOC, strlen(DOC), &rows, &n, &me), CG_ERR_MAP);
    assert_int_equal(n, 0);
    assert_string_equal(me.stage, "map");
    assert_string_equal(me.rule, "encounters");
    assert_string_equal(me.out_column, "visit_start_date");
    assert_non_null(strstr(me.text, "is not an HL7 date/time"));
    const cg_quality_t *q;
    assert_int_equal(cg_mapper_quality(mp, &q), 0);
    cg_mapper_destroy(mp);
    cg_specset_destroy(ss);
}

static const char *ORU_BAD = "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|M43|P|2.5.1\r"
                             "PID|1||777^^^HOSP^MR\r"
                             "OBR|1|O1|F1|4548-4^HbA1c^LN|||20240314093000\r"
                             "OBX|1|NM|4548-4^HbA1c^LN||7.2|%\r"
                             "OBX|2|NM|4548-4^HbA1c^LN||7.4|%|||||F|||2024-03-14\r"
                             "OBX|3|NM|4548-4^HbA1c^LN||7.6|%\r";

static void test_hl7_on_error(void **state)
{
    (void)state;
    char err[256];
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    const cg_quality_t *q;
    /* HL7 v2's default is "message": the malformed OBX fails the message */
    cg_specset_t *ss = load_spec("hl7v2-oru-omop.json", NULL);
    cg_mapper_t *mp = cg_mapper_new(ss, &env, err, sizeof(err));
    assert_int_equal(cg_mapper_map_hl7(mp, ORU_BAD, strlen(ORU_BAD), &rows, &n, &me), CG_ERR_MAP);
    assert_int_equal(cg_mapper_quality(mp, &q), 0);
    cg_mapper_destroy(mp);
    cg_specset_destroy(ss);
    /* opted in: the OBX is left out, the finding names its segment */
    ss = load_spec("hl7v2-oru-omop.json", "entry");
    mp = cg_mapper_new(ss, &env, err, sizeof(err));
    assert_int_equal(cg_mapper_map_hl7(mp, ORU_BAD, strlen(ORU_BAD), &rows, &n, &me), CG_OK);
    assert_int_equal(count_table(rows, n, "measurement"), 2);
    assert_int_equal(cg_mapper_quality(mp, &q), 1);
    assert_string_equal(q->rule, "obx-numeric");
    assert_string_equal(q->reason, "invalid_datetime");
    assert_null(q->xpath);
    assert_int_equal(q->segment, 5);
    assert_string_equal(q->seg_name, "OBX");
    assert_int_equal(q->entry, 2);
    cg_mapper_destroy(mp);
    cg_specset_destroy(ss);
}

static void test_bad_on_error_is_located(void **state)
{
    (void)state;
    const char *text =
        "{\"spec\":\"t\",\"version\":1,\n"
        " \"on_error\": \"segment\",\n"
        " \"input\":{\"format\":\"hl7v2\",\"messages\":[\"ADT\"]},\n"
        " \"rules\":[{\"name\":\"o\",\"table\":\"observation\",\"columns\":{"
        "\"person_id\":1,\"observation_concept_id\":0,\"observation_date\":\"EVN-2\","
        "\"observation_type_concept_id\":32817}}]}\n";
    cg_error_t errs[4];
    size_t n = 0;
    assert_null(cg_specset_load_string(text, "t.json", &env, errs, 4, &n));
    assert_int_equal(n, 1);
    assert_string_equal(errs[0].file, "t.json");
    assert_int_equal(errs[0].line, 2);
    assert_int_equal(errs[0].column, 14);
    assert_non_null(strstr(errs[0].text, "\"on_error\" must be \"message\" or \"entry\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ccda_bad_entry_is_left_out),
        cmocka_unit_test(test_ccda_on_error_message_fails_the_document),
        cmocka_unit_test(test_hl7_on_error),
        cmocka_unit_test(test_bad_on_error_is_located),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
