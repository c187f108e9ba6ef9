/* test_spec_embed.c - a CDA document inside an MDM's OBX-5 (a rule's "document"): the shipped
 * specs map it as text with HL7 escape sequences just as Base64, into the same rows as each
 * other, keyed to the message's patient; a broken document fails the message with a located,
 * value-free error at stage "decode"; a "document" rule that could not work fails the spec. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_mapping.h"
#include "spec_test_util.h"

static cg_mapping_t *bundle;
static cg_mapping_worker_t *mw;
/* what test_document_rule_compile_errors compiles its own specs with: the bundle's */
static cg_spec_env_t env;

static int setup(void **state)
{
    (void)state;
    cg_mapping_opts_t o = {.specs = CG_SOURCE_DIR "/specs",
                           .key_file = CG_SOURCE_DIR "/tests/golden/key"};
    bundle = spec_test_mapping(&o, &mw);
    env = (cg_spec_env_t){.vocab = cg_mapping_vocab(bundle), .pseudo = cg_mapping_pseudo(bundle)};
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cg_mapping_worker_destroy(mw);
    cg_mapping_destroy(bundle);
    return 0;
}

/* A problem whose id's extension has a '^' and whose narrative has an '&', the HL7 separators
 * an escaped document must escape. MRN-SECRET-42 is the document's own patient identifier, which
 * no error may quote. */
static const char *DOC =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<ClinicalDocument xmlns=\"urn:hl7-org:v3\" "
    "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n"
    "<templateId root=\"2.16.840.1.113883.10.20.22.1.8\"/>\n"
    "<id root=\"1.2.3\" extension=\"DOC-77\"/><effectiveTime value=\"20240101\"/>\n"
    "<recordTarget><patientRole><id root=\"1.2.3.9\" extension=\"MRN-SECRET-42\"/>"
    "<patient><birthTime value=\"1980\"/></patient></patientRole></recordTarget>\n"
    "<component><structuredBody><component><section>\n"
    "<templateId root=\"2.16.840.1.113883.10.20.22.2.5.1\"/>\n"
    "<text>Asthma &amp; rhinitis</text>\n"
    "<entry><act classCode=\"ACT\" moodCode=\"EVN\"><entryRelationship typeCode=\"SUBJ\">\n"
    "<observation classCode=\"OBS\" moodCode=\"EVN\">"
    "<templateId root=\"2.16.840.1.113883.10.20.22.4.4\"/>\n"
    "<id root=\"2.999\" extension=\"P^1\"/>\n"
    "<effectiveTime><low value=\"20230405\"/></effectiveTime>"
    "<value xsi:type=\"CD\" code=\"195967001\" codeSystem=\"2.16.840.1.113883.6.96\"/>\n"
    "</observation></entryRelationship></act></entry>\n"
    "</section></component></structuredBody></component>\n"
    "</ClinicalDocument>\n";

#define HEAD                                                                                       \
    "MSH|^~\\&|TRANS|GENHOSP|CG|RES|20240325140000||MDM^T02^MDM_T02|M1|P|2.5.1\r"                  \
    "EVN|T02|20240325140000\r"                                                                     \
    "PID|1||100234^^^GENHOSP^MR||Doe^Jane||19670412|F\r"                                           \
    "TXA|1|DS^Discharge "                                                                          \
    "summary|TX|20240325133000||20240325130000||||||DOC-6001^TRANS||||||AU||AV\r"

/* DOC with HL7 escapes (\S\ \T\ \E\ \F\ \R\), its lines as OBX-5 repetitions. */
static char *escaped(const char *doc)
{
    size_t n = strlen(doc);
    char *o = malloc(n * 3 + 1), *p = o;
    for (const char *s = doc; *s; s++) {
        const char *e = *s == '^'    ? "\\S\\"
                        : *s == '&'  ? "\\T\\"
                        : *s == '\\' ? "\\E\\"
                        : *s == '|'  ? "\\F\\"
                        : *s == '\n' ? "~" /* a line a repetition: the spec joins them by \n */
                                     : NULL;
        if (e)
            p += sprintf(p, "%s", e);
        else
            *p++ = *s;
    }
    *p = '\0';
    return o;
}

static char *base64(const char *s)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s);
    char *o = malloc(n / 3 * 4 + 5), *p = o;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)s[i] << 16;
        if (i + 1 < n)
            v |= (unsigned char)s[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)s[i + 2];
        *p++ = a[v >> 18 & 63];
        *p++ = a[v >> 12 & 63];
        *p++ = i + 1 < n ? a[v >> 6 & 63] : '=';
        *p++ = i + 2 < n ? a[v & 63] : '=';
    }
    *p = '\0';
    return o;
}

static char *message(const char *obx5, const char *type)
{
    char *m = NULL;
    assert_true(asprintf(&m, HEAD "OBX|1|%s|DS^Discharge summary||%s||||||F\r", type, obx5) > 0);
    return m;
}

static const cg_row_t *find(const cg_row_t *rows, size_t n, const char *table)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(rows[i].table->name, table))
            return &rows[i];
    return NULL;
}

static int64_t id_of(const cg_row_t *r, const char *col)
{
    const cg_value_t *v = cg_row_value_named(r, col);
    assert_non_null(v);
    char buf[32];
    assert_true(v->len < sizeof(buf));
    memcpy(buf, v->ptr, v->len); /* values are not NUL-terminated */
    buf[v->len] = '\0';
    return strtoll(buf, NULL, 10);
}

static void test_escaped_and_base64_map_alike(void **state)
{
    (void)state;
    const cg_row_t *rows;
    size_t n;
    cg_error_t e;
    char *esc = escaped(DOC), *b = base64(DOC), *ed = NULL;
    assert_true(asprintf(&ed, "TRANS^TEXT^XML^Base64^%s", b) > 0);
    char *m1 = message(esc, "TX"), *m2 = message(ed, "ED");

    assert_int_equal(cg_mapping_worker_map(mw, CG_INPUT_AUTO, m1, strlen(m1), &rows, &n, &e),
                     CG_OK);
    const cg_row_t *note = find(rows, n, "note"), *cond = find(rows, n, "condition_occurrence");
    assert_non_null(note);
    assert_non_null(cond);
    assert_non_null(find(rows, n, "person"));
    assert_string_equal(cond->spec, "cda-ccda-omop");
    /* the message's patient keys the document's rows, not the document's own identifier */
    int64_t person = id_of(note, "person_id"), cid = id_of(cond, "condition_occurrence_id");
    assert_int_equal(id_of(cond, "person_id"), person);
    char m1_id[CG_PSEUDO_MESSAGE_ID_LEN + 1]; /* the message's, M1, keyed */
    char err[256];
    cg_pseudo_t *ps = cg_pseudo_clone(env.pseudo, err, sizeof(err)); /* the bundle's is const */
    assert_non_null(ps);
    assert_int_equal(cg_pseudo_message_id(ps, CG_SLICE_LIT("M1"), m1_id), CG_OK);
    cg_pseudo_destroy(ps);
    assert_int_equal(cond->message_id.len, CG_PSEUDO_MESSAGE_ID_LEN);
    assert_memory_equal(cond->message_id.ptr, m1_id, CG_PSEUDO_MESSAGE_ID_LEN);
    const cg_value_t *src = cg_row_value_named(cond, "condition_source_value");
    assert_int_equal(src->len, 9);
    assert_memory_equal(src->ptr, "195967001", 9);

    assert_int_equal(cg_mapping_worker_map(mw, CG_INPUT_AUTO, m2, strlen(m2), &rows, &n, &e),
                     CG_OK);
    cond = find(rows, n, "condition_occurrence");
    assert_non_null(cond);
    assert_int_equal(id_of(cond, "condition_occurrence_id"), cid);
    assert_int_equal(id_of(cond, "person_id"), person);
    assert_int_equal(id_of(find(rows, n, "note"), "person_id"), person);

    /* a TX that is not a document stays the note alone */
    char *plain = message("Discharged in good condition.", "TX");
    assert_int_equal(cg_mapping_worker_map(mw, CG_INPUT_AUTO, plain, strlen(plain), &rows, &n, &e),
                     CG_OK);
    assert_int_equal(n, 1);
    free(plain);
    free(esc), free(b), free(ed), free(m1), free(m2);
}

/* Maps msg, which must fail at stage "decode" in segment 5 (the OBX) with want in its text and
 * none of the message's or document's values. */
static void expect_broken(const char *msg, const char *want)
{
    const cg_row_t *rows;
    size_t n;
    cg_error_t e;
    assert_int_not_equal(cg_mapping_worker_map(mw, CG_INPUT_AUTO, msg, strlen(msg), &rows, &n, &e),
                         CG_OK);
    assert_int_equal(n, 0);
    assert_non_null(e.stage);
    assert_string_equal(e.stage, "decode");
    assert_int_equal(e.at, CG_ERROR_AT_HL7);
    assert_int_equal(e.segment, 5);
    assert_string_equal(e.seg_name, "OBX");
    assert_string_equal(e.spec, "hl7v2-documents-omop");
    assert_string_equal(e.rule, "embedded-document");
    if (!strstr(e.text, "embedded document: ") || !strstr(e.text, want))
        fail_msg("'%s' lacks '%s'", e.text, want);
    const char *never[] = {"MRN-SECRET-42", "100234", "DOC-77", "Asthma", "Doe", "PD94"};
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++)
        if (strstr(e.text, never[i]))
            fail_msg("'%s' quotes %s", e.text, never[i]);
    char line[2048];
    cg_error_format(&e, line, sizeof(line));
    assert_non_null(strstr(line, "segment 5 OBX"));
}

static void test_broken_document(void **state)
{
    (void)state;
    /* not Base64 */
    char *b = base64(DOC), *ed = NULL;
    b[40] = '*';
    assert_true(asprintf(&ed, "TRANS^TEXT^XML^Base64^%s", b) > 0);
    char *m = message(ed, "ED");
    expect_broken(m, "not valid Base64 (byte 41 of");
    free(m), free(ed), free(b);

    /* an encoding HL7 does not know */
    m = message("TRANS^TEXT^XML^Zip^AAAA", "ED");
    expect_broken(m, "none of A, Hex and Base64");
    free(m);

    /* cut short: the parser's reason with the document's line and column */
    char *cut = strndup(DOC, strlen(DOC) - 60);
    b = base64(cut);
    assert_true(asprintf(&ed, "TRANS^TEXT^XML^Base64^%s", b) > 0);
    m = message(ed, "ED");
    expect_broken(m, "line ");
    free(m), free(ed), free(b), free(cut);

    /* the XML hardening holds inside a message too: declared entities are refused */
    const char *xxe =
        "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
        "<ClinicalDocument xmlns=\"urn:hl7-org:v3\">&x;</ClinicalDocument>";
    b = base64(xxe);
    assert_true(asprintf(&ed, "TRANS^TEXT^XML^Base64^%s", b) > 0);
    m = message(ed, "ED");
    expect_broken(m, "refused");
    free(m), free(ed), free(b);

    /* an escaped document that is not well-formed */
    m = message("<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><id extension=\"MRN-SECRET-42\">",
                "TX");
    expect_broken(m, "line 1");
    free(m);

    /* a well-formed document no spec takes fails as it would on its own */
    m = message("<Other><x>MRN-SECRET-42</x></Other>", "TX");
    const cg_row_t *rows;
    size_t n;
    cg_error_t e;
    assert_int_equal(cg_mapping_worker_map(mw, CG_INPUT_AUTO, m, strlen(m), &rows, &n, &e),
                     CG_ERR_MAP);
    assert_int_equal(e.segment, 5);
    assert_non_null(strstr(e.text, "embedded document: no spec takes XML documents with root "
                                   "element <Other>"));
    assert_null(strstr(e.text, "MRN-SECRET-42"));
    free(m);

    /* and the mapper is fine for the next message */
    char *esc = escaped(DOC);
    m = message(esc, "TX");
    assert_int_equal(cg_mapping_worker_map(mw, CG_INPUT_AUTO, m, strlen(m), &rows, &n, &e), CG_OK);
    assert_non_null(find(rows, n, "condition_occurrence"));
    free(m), free(esc);
}

static const char *compile_error(const char *text)
{
    static cg_error_t errs[4];
    size_t n = 0;
    cg_specset_t *s = cg_specset_load_string(text, "t.json", &env, errs, 4, &n);
    cg_specset_destroy(s);
    return s ? NULL : errs[0].text;
}

static void test_document_rule_compile_errors(void **state)
{
    (void)state;
    const char *head = "{\"spec\": \"t\", \"version\": 1, \"input\": {\"format\": \"hl7v2\", "
                       "\"messages\": [\"MDM\"]}, ";
    char *t = NULL;
    /* no patient: whose rows would they be */
    assert_true(asprintf(&t,
                         "%s\"rules\": [{\"name\": \"d\", \"document\": {\"format\": \"xml\", "
                         "\"data\": \"OBX-5\"}}]}",
                         head) > 0);
    const char *e = compile_error(t);
    assert_non_null(e);
    assert_non_null(strstr(e, "needs a \"patient\""));
    free(t);
    /* a row's keys beside it */
    assert_true(asprintf(&t,
                         "%s\"patient\": {\"id\": \"PID-3.1\"}, \"rules\": [{\"name\": \"d\", "
                         "\"table\": \"note\", \"document\": {\"format\": \"xml\", \"data\": "
                         "\"OBX-5\"}}]}",
                         head) > 0);
    e = compile_error(t);
    assert_non_null(e);
    assert_non_null(strstr(e, "no \"table\""));
    free(t);
    /* another format */
    assert_true(asprintf(&t,
                         "%s\"patient\": {\"id\": \"PID-3.1\"}, \"rules\": [{\"name\": \"d\", "
                         "\"document\": {\"format\": \"pdf\", \"data\": \"OBX-5\"}}]}",
                         head) > 0);
    e = compile_error(t);
    assert_non_null(e);
    assert_non_null(strstr(e, "must be \"xml\""));
    free(t);
    /* and one that compiles */
    assert_true(asprintf(&t,
                         "%s\"patient\": {\"id\": \"PID-3.1\"}, \"rules\": [{\"name\": \"d\", "
                         "\"foreach\": \"OBX[*]\", \"document\": {\"format\": \"xml\", "
                         "\"data\": \"OBX-5.5\", \"encoding\": \"OBX-5.4\"}}]}",
                         head) > 0);
    assert_null(compile_error(t));
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escaped_and_base64_map_alike),
        cmocka_unit_test(test_broken_document),
        cmocka_unit_test(test_document_rule_compile_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
