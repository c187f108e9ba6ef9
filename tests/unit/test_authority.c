/* test_authority.c - which assigning authority a patient identifier is hashed under
 * (pseudonym.authorities, cg_pseudo_authority): refused without one by default, a per-facility
 * default, the facility itself (opt-in), aliases across HL7 v2 namespaces and C-CDA OIDs, and
 * merges (MRG-1) under the same rules; through the shipped specs, as the gateway maps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_mapping.h"
#include "cg_pseudo.h"

#define KEY_FILE CG_SOURCE_DIR "/tests/golden/key"

/* ---- the rule alone ---- */

static cg_slice_t S(const char *s)
{
    return (cg_slice_t){s, strlen(s)};
}

static int eq(cg_slice_t a, const char *b)
{
    return a.len == strlen(b) && !memcmp(a.ptr, b, a.len);
}

static void test_rule(void **state)
{
    (void)state;
    cg_slice_t out;
    /* none: no aliases, no defaults, refuse */
    assert_int_equal(cg_pseudo_authority(NULL, S("HOSP_A"), S("F"), &out), CG_PSEUDO_AUTH_GIVEN);
    assert_true(eq(out, "HOSP_A"));
    assert_int_equal(cg_pseudo_authority(NULL, S(""), S("F"), &out), CG_PSEUDO_AUTH_NO_DEFAULT);
    assert_int_equal(out.len, 0);
    assert_int_equal(cg_pseudo_authority(NULL, S(""), S(""), &out), CG_PSEUDO_AUTH_NO_FACILITY);

    cg_pseudo_pair_t aliases[] = {{"2.16.840.1.113883.19.5", "HOSP_A"}, {"FAC_C", "REG_C"}};
    cg_pseudo_pair_t defaults[] = {{"HOSP_A", "2.16.840.1.113883.19.5"}, {"HOSP_B", "MRN_B"}};
    cg_pseudo_authority_opts_t o = {aliases, 2, defaults, 2, CG_PSEUDO_MISSING_REFUSE};
    char err[256];
    cg_pseudo_authorities_t *a = cg_pseudo_authorities_new(&o, NULL, err, sizeof(err));
    assert_non_null(a);
    /* an alias applies to the identifier's own authority */
    assert_int_equal(cg_pseudo_authority(a, S("2.16.840.1.113883.19.5"), S("X"), &out),
                     CG_PSEUDO_AUTH_GIVEN);
    assert_true(eq(out, "HOSP_A"));
    /* and to a default: HOSP_A's default is an OID, aliased to the namespace */
    assert_int_equal(cg_pseudo_authority(a, S(""), S("HOSP_A"), &out), CG_PSEUDO_AUTH_DEFAULT);
    assert_true(eq(out, "HOSP_A"));
    assert_int_equal(cg_pseudo_authority(a, S(""), S("HOSP_B"), &out), CG_PSEUDO_AUTH_DEFAULT);
    assert_true(eq(out, "MRN_B"));
    /* exact bytes: no case folding, no trimming */
    assert_int_equal(cg_pseudo_authority(a, S(""), S("hosp_b"), &out), CG_PSEUDO_AUTH_NO_DEFAULT);
    assert_int_equal(cg_pseudo_authority(a, S(""), S("HOSP_C"), &out), CG_PSEUDO_AUTH_NO_DEFAULT);
    cg_pseudo_authorities_destroy(a);

    /* missing "facility": the facility, aliased too */
    o.missing = CG_PSEUDO_MISSING_FACILITY;
    a = cg_pseudo_authorities_new(&o, NULL, err, sizeof(err));
    assert_int_equal(cg_pseudo_authority(a, S(""), S("FAC_C"), &out), CG_PSEUDO_AUTH_FACILITY);
    assert_true(eq(out, "REG_C"));
    assert_int_equal(cg_pseudo_authority(a, S(""), S("HOSP_B"), &out), CG_PSEUDO_AUTH_DEFAULT);
    assert_int_equal(cg_pseudo_authority(a, S(""), S(""), &out), CG_PSEUDO_AUTH_NO_FACILITY);
    cg_pseudo_authorities_destroy(a);
}

static void test_bad_tables(void **state)
{
    (void)state;
    char err[256];
    cg_pseudo_authority_bad_t bad;
    cg_pseudo_pair_t chain[] = {{"A", "B"}, {"B", "C"}};
    cg_pseudo_authority_opts_t o = {.aliases = chain, .n_aliases = 2};
    assert_null(cg_pseudo_authorities_new(&o, &bad, err, sizeof(err)));
    assert_string_equal(bad.table, "aliases");
    assert_int_equal(bad.index, 0);
    assert_non_null(strstr(err, "itself an alias"));

    cg_pseudo_pair_t twice[] = {{"A", "B"}, {"A", "C"}};
    o = (cg_pseudo_authority_opts_t){.defaults = twice, .n_defaults = 2};
    assert_null(cg_pseudo_authorities_new(&o, &bad, err, sizeof(err)));
    assert_string_equal(bad.table, "defaults");
    assert_int_equal(bad.index, 1);
    assert_non_null(strstr(err, "listed twice"));

    cg_pseudo_pair_t empty[] = {{"A", ""}};
    o = (cg_pseudo_authority_opts_t){.defaults = empty, .n_defaults = 1};
    assert_null(cg_pseudo_authorities_new(&o, &bad, err, sizeof(err)));
    assert_non_null(strstr(err, "empty authority"));
    cg_pseudo_pair_t us[] = {{"A\x1F", "B"}};
    o = (cg_pseudo_authority_opts_t){.aliases = us, .n_aliases = 1};
    assert_null(cg_pseudo_authorities_new(&o, &bad, err, sizeof(err)));
    o = (cg_pseudo_authority_opts_t){.missing = (cg_pseudo_missing_t)7};
    assert_null(cg_pseudo_authorities_new(&o, &bad, err, sizeof(err)));
    assert_null(bad.table);
}

/* ---- through the shipped specs ---- */

typedef struct mapped {
    cg_err_t rc;
    char text[600]; /* the error */
    int64_t person_id, merged_person_id;
} mapped_t;

static int64_t int_col(const cg_row_t *row, const char *name)
{
    const cg_value_t *v = cg_row_value_named(row, name);
    if (!v || !v->ptr)
        return 0;
    char buf[32];
    snprintf(buf, sizeof(buf), "%.*s", (int)v->len, v->ptr);
    return strtoll(buf, NULL, 10);
}

static cg_mapping_t *load(cg_pseudo_authority_opts_t ao)
{
    cg_mapping_opts_t o = {
        .specs = CG_SOURCE_DIR "/specs", .key_file = KEY_FILE, .authorities = ao};
    cg_error_t errs[4];
    size_t n = 0;
    cg_mapping_t *m = cg_mapping_load(&o, errs, 4, &n);
    if (!m) {
        char buf[1024];
        fail_msg("load: %s", cg_error_format(&errs[0], buf, sizeof(buf)));
    }
    return m;
}

static mapped_t map(cg_mapping_t *m, const char *input)
{
    char errstr[256];
    cg_mapping_worker_t *w = cg_mapping_worker_new(m, errstr, sizeof(errstr));
    assert_non_null(w);
    mapped_t r = {0};
    const cg_row_t *rows;
    size_t n = 0;
    cg_error_t e;
    memset(&e, 0, sizeof(e));
    r.rc = cg_mapping_worker_map(w, CG_INPUT_AUTO, input, strlen(input), &rows, &n, &e);
    if (r.rc)
        cg_error_format(&e, r.text, sizeof(r.text));
    for (size_t i = 0; !r.rc && i < n; i++) {
        if (!r.person_id)
            r.person_id = int_col(&rows[i], "person_id");
        if (cg_row_value_named(&rows[i], "merged_person_id"))
            r.merged_person_id = int_col(&rows[i], "merged_person_id");
    }
    cg_mapping_worker_destroy(w);
    return r;
}

/* An ADT^A04 from facility fac whose PID-3 is pid3 (HL7 CX). */
static const char *a04(char *buf, size_t size, const char *fac, const char *pid3)
{
    snprintf(buf, size,
             "MSH|^~\\&|APP|%s|CG|R|20240314||ADT^A04|M1|P|2.5\rEVN|A04|20240314\r"
             "PID|1||%s||Doe^J||19670412|F\rPV1|1|O\r",
             fac, pid3);
    return buf;
}

/* An ADT^A40 from fac: the surviving patient pid3 absorbs the prior mrg1. */
static const char *a40(char *buf, size_t size, const char *fac, const char *pid3, const char *mrg1)
{
    snprintf(buf, size,
             "MSH|^~\\&|APP|%s|CG|R|20240314||ADT^A40|M2|P|2.5\rEVN|A40|20240314\r"
             "PID|1||%s||Doe^J||19670412|F\rMRG|%s\r",
             fac, pid3, mrg1);
    return buf;
}

/* A C-CDA CCD whose patient is 88001 under root (none: NULL), kept by custodian. */
static const char *ccd(char *buf, size_t size, const char *root, const char *custodian)
{
    char id[128];
    if (root)
        snprintf(id, sizeof(id), "<id root=\"%s\" extension=\"88001\"/>", root);
    else
        snprintf(id, sizeof(id), "<id extension=\"88001\"/>");
    snprintf(buf, size,
             "<?xml version=\"1.0\"?>\n<ClinicalDocument xmlns=\"urn:hl7-org:v3\">\n"
             "<templateId root=\"2.16.840.1.113883.10.20.22.1.2\"/>\n"
             "<id root=\"1.2.3\" extension=\"DOC1\"/><effectiveTime value=\"20240314\"/>\n"
             "<recordTarget><patientRole>%s<patient><administrativeGenderCode code=\"F\"/>"
             "<birthTime value=\"19670412\"/></patient></patientRole></recordTarget>\n"
             "<custodian><assignedCustodian><representedCustodianOrganization><id root=\"%s\"/>"
             "</representedCustodianOrganization></assignedCustodian></custodian>\n"
             "</ClinicalDocument>\n",
             id, custodian);
    return buf;
}

/* The case: 88001 without an authority from two hospitals. */
static void test_two_hospitals_without_authority(void **state)
{
    (void)state;
    char a[512], b[512];
    a04(a, sizeof(a), "HOSP_A", "88001");
    a04(b, sizeof(b), "HOSP_B", "88001");

    /* the default: refused, the reason naming the fields and the rule, never the value */
    cg_mapping_t *m = load((cg_pseudo_authority_opts_t){0});
    mapped_t ra = map(m, a);
    assert_int_equal(ra.rc, CG_ERR_MAP);
    assert_non_null(strstr(ra.text, "the patient identifier (PID-3[5=*].1) has no assigning "
                                    "authority (PID-3[5=*].4.1 else PID-3[5=*].4.2) and "
                                    "pseudonym.authorities has no default for its sending "
                                    "facility (MSH-4.1 else MSH-4.2)"));
    assert_null(strstr(ra.text, "88001"));
    assert_null(strstr(ra.text, "HOSP_A"));
    /* with one, the same message maps */
    char c[512];
    mapped_t rc = map(m, a04(c, sizeof(c), "HOSP_A", "88001^^^HOSP_A"));
    assert_int_equal(rc.rc, CG_OK);
    cg_mapping_destroy(m);

    /* missing "facility": two persons, each hospital's number its own */
    m = load((cg_pseudo_authority_opts_t){.missing = CG_PSEUDO_MISSING_FACILITY});
    ra = map(m, a);
    mapped_t rb = map(m, b);
    assert_int_equal(ra.rc, CG_OK);
    assert_int_equal(rb.rc, CG_OK);
    assert_true(ra.person_id != 0 && rb.person_id != 0);
    assert_true(ra.person_id != rb.person_id);
    /* the facility is the authority: as if HOSP_A had sent it */
    assert_int_equal(ra.person_id, rc.person_id);
    /* no sending facility at all: still refused */
    mapped_t rn = map(m, a04(c, sizeof(c), "", "88001"));
    assert_int_equal(rn.rc, CG_ERR_MAP);
    assert_non_null(strstr(rn.text, "no sending facility (MSH-4.1 else MSH-4.2)"));
    cg_mapping_destroy(m);
}

/* A default per sending facility: HOSP_A's numbers are MRN_A's, HOSP_B has none (refused). */
static void test_default_per_facility(void **state)
{
    (void)state;
    cg_pseudo_pair_t defaults[] = {{"HOSP_A", "MRN_A"}};
    cg_mapping_t *m = load((cg_pseudo_authority_opts_t){.defaults = defaults, .n_defaults = 1});
    char a[512], b[512], c[512];
    mapped_t ra = map(m, a04(a, sizeof(a), "HOSP_A", "88001"));
    mapped_t rb = map(m, a04(b, sizeof(b), "HOSP_B", "88001"));
    mapped_t rc = map(m, a04(c, sizeof(c), "HOSP_B", "88001^^^MRN_A"));
    assert_int_equal(ra.rc, CG_OK);
    assert_int_equal(rb.rc, CG_ERR_MAP);
    assert_int_equal(rc.rc, CG_OK);
    /* the default is the authority, byte for byte: the same person as one sent with it */
    assert_int_equal(ra.person_id, rc.person_id);
    /* an authority in the message wins over the facility's default */
    mapped_t rd = map(m, a04(c, sizeof(c), "HOSP_A", "88001^^^OTHER"));
    assert_int_equal(rd.rc, CG_OK);
    assert_true(rd.person_id != ra.person_id);
    /* PID-3.4.2 (universal id) when PID-3.4.1 is empty */
    mapped_t re = map(m, a04(c, sizeof(c), "HOSP_B", "88001^^^&MRN_A&ISO"));
    assert_int_equal(re.rc, CG_OK);
    assert_int_equal(re.person_id, ra.person_id);
    cg_mapping_destroy(m);
}

/* The other case: a namespace in HL7 v2, an OID in C-CDA, one registry. */
static void test_alias_links_hl7_and_ccda(void **state)
{
    (void)state;
    char h[512], x[2048];
    a04(h, sizeof(h), "HOSP_A", "88001^^^HOSP_A");
    ccd(x, sizeof(x), "2.16.840.1.113883.19.5", "2.16.840.1.113883.19.5");

    cg_mapping_t *m = load((cg_pseudo_authority_opts_t){0});
    mapped_t rh = map(m, h), rx = map(m, x);
    assert_int_equal(rh.rc, CG_OK);
    if (rx.rc)
        fail_msg("ccd: %s", rx.text);
    assert_true(rh.person_id != rx.person_id); /* two names: two persons */
    cg_mapping_destroy(m);

    cg_pseudo_pair_t aliases[] = {{"2.16.840.1.113883.19.5", "HOSP_A"}};
    m = load((cg_pseudo_authority_opts_t){.aliases = aliases, .n_aliases = 1});
    mapped_t ah = map(m, h), ax = map(m, x);
    assert_int_equal(ah.rc, CG_OK);
    assert_int_equal(ax.rc, CG_OK);
    assert_int_equal(ah.person_id, ax.person_id);
    assert_int_equal(ah.person_id, rh.person_id); /* the target name's pseudonym, unchanged */
    /* a document without a root: the custodian is its sending facility */
    mapped_t nx = map(m, ccd(x, sizeof(x), NULL, "2.16.840.1.113883.19.5"));
    assert_int_equal(nx.rc, CG_ERR_MAP);
    assert_non_null(strstr(nx.text, "has no assigning authority"));
    assert_null(strstr(nx.text, "88001"));
    cg_mapping_destroy(m);

    cg_pseudo_pair_t defaults[] = {{"2.16.840.1.113883.19.5", "2.16.840.1.113883.19.5"}};
    m = load((cg_pseudo_authority_opts_t){
        .aliases = aliases, .n_aliases = 1, .defaults = defaults, .n_defaults = 1});
    nx = map(m, ccd(x, sizeof(x), NULL, "2.16.840.1.113883.19.5"));
    assert_int_equal(nx.rc, CG_OK);
    assert_int_equal(nx.person_id, ah.person_id);
    cg_mapping_destroy(m);
}

/* A merge's prior patient (MRG-1) follows the same rules as the patient. */
static void test_merge_follows_the_rules(void **state)
{
    (void)state;
    char a[512], mg[512];
    a40(mg, sizeof(mg), "HOSP_A", "77002^^^HOSP_A", "88001");

    cg_mapping_t *m = load((cg_pseudo_authority_opts_t){0});
    mapped_t r = map(m, mg);
    assert_int_equal(r.rc, CG_ERR_MAP);
    assert_non_null(strstr(r.text, "the identifier (MRG-1[5=*].1) has no assigning authority "
                                   "(MRG-1[5=*].4.1 else MRG-1[5=*].4.2)"));
    assert_null(strstr(r.text, "88001"));
    cg_mapping_destroy(m);

    /* facility: the prior patient is HOSP_A's 88001, the person A04 made */
    m = load((cg_pseudo_authority_opts_t){.missing = CG_PSEUDO_MISSING_FACILITY});
    r = map(m, mg);
    mapped_t p = map(m, a04(a, sizeof(a), "HOSP_A", "88001"));
    assert_int_equal(r.rc, CG_OK);
    assert_int_equal(p.rc, CG_OK);
    assert_int_equal(r.merged_person_id, p.person_id);
    cg_mapping_destroy(m);

    /* a default, and an alias of it */
    cg_pseudo_pair_t defaults[] = {{"HOSP_A", "1.2.3"}};
    cg_pseudo_pair_t aliases[] = {{"1.2.3", "HOSP_A"}};
    m = load((cg_pseudo_authority_opts_t){.defaults = defaults, .n_defaults = 1});
    r = map(m, mg);
    p = map(m, a04(a, sizeof(a), "HOSP_A", "88001^^^1.2.3"));
    assert_int_equal(r.rc, CG_OK);
    assert_int_equal(r.merged_person_id, p.person_id);
    cg_mapping_destroy(m);
    m = load((cg_pseudo_authority_opts_t){
        .defaults = defaults, .n_defaults = 1, .aliases = aliases, .n_aliases = 1});
    r = map(m, mg);
    p = map(m, a04(a, sizeof(a), "HOSP_B", "88001^^^HOSP_A"));
    assert_int_equal(r.rc, CG_OK);
    assert_int_equal(r.merged_person_id, p.person_id);
    cg_mapping_destroy(m);
}

/* A bad table fails the bundle's load (the daemon's config check locates it first). */
static void test_bad_table_fails_the_load(void **state)
{
    (void)state;
    cg_pseudo_pair_t chain[] = {{"A", "B"}, {"B", "C"}};
    cg_mapping_opts_t o = {.specs = CG_SOURCE_DIR "/specs",
                           .no_key = 1,
                           .authorities = {.aliases = chain, .n_aliases = 2}};
    cg_error_t errs[4];
    size_t n = 0;
    assert_null(cg_mapping_load(&o, errs, 4, &n));
    assert_int_equal(n, 1);
    assert_non_null(strstr(errs[0].text, "itself an alias"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule),
        cmocka_unit_test(test_bad_tables),
        cmocka_unit_test(test_two_hospitals_without_authority),
        cmocka_unit_test(test_default_per_facility),
        cmocka_unit_test(test_alias_links_hl7_and_ccda),
        cmocka_unit_test(test_merge_follows_the_rules),
        cmocka_unit_test(test_bad_table_fails_the_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
