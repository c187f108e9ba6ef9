/* test_hl7_coverage.c - every message of ../shared/corpus/hl7v2 has a declared handling under
 * the shipped specs (skipped, and says so, when the corpus is absent): it maps to records, maps
 * to no rows, or is declared no research content. The only failures (dead letters in the
 * gateway) are the deliberately broken files listed below, each with the reason it must fail
 * with; a listed file that starts to map fails the test too, so the list stays true. Files are
 * split into messages as `cohortgate map` splits them; a file with no message is mapped whole,
 * as the gateway maps one record. Per-type outcomes are printed for the note.
 *
 * The corpus's feeds mostly send no assigning authority (68 of its 123 PID segments have no
 * PID-3.4), which the default (pseudonym.authorities.missing "refuse") dead-letters: this test
 * maps under "facility", each sending facility its own authority, as a site taking such feeds
 * would; a second pass under the default checks that what it refuses more is refused for that
 * reason alone, and counts it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <sys/stat.h>

#include "cg_mapping.h"
#include "spec_test_util.h"
#include "test_hl7_util.h"

/* The corpus's broken files (paths under corpus/hl7v2) and what their dead letter says. */
static struct {
    const char *file, *reason;
    int seen;
} broken[] = {
    /* test files of a validation suite: an MSH alone, or without a required field */
    {"Test/Message/empty.hl7", "empty input: no MSH segment", 0},
    {"Test/Message/msh_present_but_missing_all_fields.hl7", "MSH-2 encoding characters", 0},
    {"Test/Message/msh_present_but_missing_msh-2.hl7", "MSH-2 encoding characters", 0},
    {"Test/Message/msh_present_but_missing_msh-9.hl7", "no spec takes ^ messages", 0},
    {"Test/Message/msh_present_but_missing_msh-6.hl7", "patient identifier (PID-3[5=*].1) is empty",
     0},
    {"Test/Message/msh_present_but_missing_msh-10.hl7",
     "patient identifier (PID-3[5=*].1) is empty", 0},
    {"Test/Message/msh-12_has_value_2_3.hl7", "patient identifier (PID-3[5=*].1) is empty", 0},
    {"Test/Message/orm_obx-5_is_not_a_numeric_value.hl7",
     "patient identifier (PID-3[5=*].1) is empty", 0},
    /* "Incorrect data types": an OBX-14 of 'February 4 2024' */
    {"Test/Orders/006_AL_ORM_O01_NBS_Incorrect_Data_Types_0_initial_message.hl7",
     "a value of 15 bytes is not an HL7 date/time", 0},
    /* "Missing required fields": no PID-3.4 and no sending facility MSH-4 to default it by */
    {"Test/Orders/007_AL_ORM_O01_NBS_Missing_Required_Fields_3_hl7_translation_final.hl7",
     "no sending facility (MSH-4.1 else MSH-4.2)", 0},
    /* 29 February 2017 does not exist */
    {"NewSTEPs/002_NewSTEPs_ORU_R01.hl7", "a value of 17 bytes is not an HL7 date/time", 0},
    /* the patient's identifier is redacted (PID-3 holds only its authority) */
    {"CA/002_CA_ORU_R01.hl7", "patient identifier (PID-3[5=*].1) is empty", 0},
    /* a template with placeholders ("DOB", "SEX"); its v2.3 PID-3 is empty and the id is in
     * PID-2, the external id. The shipped specs do not fall back to PID-2 (specs/README.md,
     * "Which identifier is the patient's"): it is another system's number, and hashed under this
     * feed's rules it would share a namespace with this feed's own PID-3 numbers */
    {"Epic/001_Epic_ORM_O01.hl7", "patient identifier (PID-3[5=*].1) is empty", 0},
};
#define N_BROKEN (sizeof(broken) / sizeof(broken[0]))

#define MAX_TYPES 64
static struct {
    char type[16];
    size_t n[3]; /* by cg_map_outcome_kind_t */
} types[MAX_TYPES];
static size_t n_types, n_messages, n_failed, n_rows, n_files;
static int refuse_pass;  /* the default: identifiers without an authority are refused */
static size_t n_refused; /* by it */
static cg_mapping_worker_t *mw;
static cg_hl7_msg_t *msg;
static const char *root_dir;

static void count(const char *type, cg_map_outcome_kind_t kind)
{
    size_t i = 0;
    while (i < n_types && strcmp(types[i].type, type))
        i++;
    if (i == n_types) {
        assert_true(n_types < MAX_TYPES);
        snprintf(types[n_types++].type, sizeof(types[i].type), "%s", type);
    }
    types[i].n[kind]++;
}

static void verdict(const char *rel, cg_err_t rc, const cg_error_t *e, size_t n)
{
    n_messages++;
    size_t b = 0;
    while (b < N_BROKEN && strcmp(broken[b].file, rel))
        b++;
    if (rc == CG_OK) {
        if (b < N_BROKEN)
            fail_msg("%s is listed as broken but maps", rel);
        cg_map_outcome_t o;
        cg_mapping_worker_outcome(mw, &o);
        assert_true(o.type && o.type[0]);
        assert_true((o.kind == CG_MAP_ROWS) == (n > 0));
        count(o.type, o.kind);
        n_rows += n;
        return;
    }
    char text[1024];
    cg_error_format(e, text, sizeof(text));
    if (refuse_pass) { /* a broken file may fail for its authority first */
        if (strstr(text, "has no assigning authority")) {
            n_refused++;
            return;
        }
        if (b < N_BROKEN && strstr(text, broken[b].reason))
            return;
        fail_msg("%s: %s (refused for another reason than its authority)", rel, text);
    }
    if (b == N_BROKEN)
        fail_msg("%s: %s: %s (a message of the corpus without a declared handling)", rel,
                 e->stage ? e->stage : "?", text);
    if (!strstr(text, broken[b].reason))
        fail_msg("%s fails with '%s', expected '%s'", rel, text, broken[b].reason);
    broken[b].seen = 1;
    n_failed++;
}

static void check_file(const char *path)
{
    const char *rel = path + strlen(root_dir) + 1;
    size_t len;
    char *buf = th_read(path, &len);
    assert_non_null(buf);
    n_files++;
    cg_hl7_reader_t rd;
    cg_hl7_reader_init(&rd, buf, len);
    size_t before = n_messages;
    const cg_row_t *rows;
    size_t n;
    cg_error_t e;
    while (cg_hl7_reader_more(&rd)) {
        cg_err_t rc = cg_hl7_reader_next(&rd, msg, &e);
        if (rc == CG_OK)
            rc = cg_mapping_worker_map_msg(mw, msg, &rows, &n, &e);
        else
            e.stage = "decode";
        verdict(rel, rc, &e, rc ? 0 : n);
    }
    if (n_messages == before) /* no message: as the gateway maps the same bytes */
        verdict(rel, cg_mapping_worker_map(mw, CG_INPUT_AUTO, buf, len, &rows, &n, &e), &e, n);
    free(buf);
}

static void walk(const char *dir)
{
    struct dirent **ents;
    int n = scandir(dir, &ents, NULL, alphasort);
    assert_true(n >= 0);
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, ents[i]->d_name);
        struct stat st;
        if (ents[i]->d_name[0] != '.' && stat(path, &st) == 0) {
            if (S_ISDIR(st.st_mode))
                walk(path);
            else
                check_file(path);
        }
        free(ents[i]);
    }
    free(ents);
}

static void test_every_message_has_a_declared_handling(void **state)
{
    (void)state;
    root_dir = CG_SHARED_CORPUS "/hl7v2";
    struct stat st;
    if (stat(root_dir, &st) != 0) {
        printf("SKIPPED: ../shared/corpus/hl7v2 not found (%s)\n", root_dir);
        skip();
    }
    cg_mapping_opts_t o = {.specs = CG_SOURCE_DIR "/specs",
                           .key_file = CG_SOURCE_DIR "/tests/golden/key",
                           .authorities = {.missing = CG_PSEUDO_MISSING_FACILITY}};
    cg_mapping_t *m = spec_test_mapping(&o, &mw);
    msg = cg_hl7_msg_new(NULL);
    assert_non_null(msg);

    walk(root_dir);

    printf("%zu files, %zu messages, %zu rows, %zu dead letters (the listed broken files)\n",
           n_files, n_messages, n_rows, n_failed);
    printf("%-12s %8s %8s %20s\n", "type", "records", "no_rows", "no_research_content");
    for (size_t i = 0; i < n_types; i++)
        printf("%-12s %8zu %8zu %20zu\n", types[i].type, types[i].n[CG_MAP_ROWS],
               types[i].n[CG_MAP_NO_ROWS], types[i].n[CG_MAP_NO_RESEARCH_CONTENT]);
    for (size_t b = 0; b < N_BROKEN; b++)
        if (!broken[b].seen)
            fail_msg("%s is listed as broken but was not found", broken[b].file);
    assert_true(n_rows > 0);

    /* the default, refuse: the messages without an authority fail, for that reason */
    cg_mapping_worker_destroy(mw);
    cg_mapping_destroy(m);
    o.authorities.missing = CG_PSEUDO_MISSING_REFUSE;
    m = spec_test_mapping(&o, &mw);
    refuse_pass = 1;
    walk(root_dir);
    refuse_pass = 0;
    printf("under pseudonym.authorities.missing \"refuse\": %zu message(s) refused for their "
           "missing assigning authority\n",
           n_refused);
    assert_true(n_refused > 0);

    cg_hl7_msg_destroy(msg);
    cg_mapping_worker_destroy(mw);
    cg_mapping_destroy(m);
}

/* The message types issue 12 lists, each as a minimal message (MSH, EVN, PID): every one has a
 * declared handling (it maps, maps to no rows, or is no research content), never "select: no spec
 * takes"; a type no spec declares still fails at select. A56-A59 are not defined by HL7. */
static void test_listed_types_have_a_declared_handling(void **state)
{
    (void)state;
    cg_mapping_opts_t o = {.specs = CG_SOURCE_DIR "/specs",
                           .key_file = CG_SOURCE_DIR "/tests/golden/key"};
    cg_mapping_worker_t *w;
    cg_mapping_t *m = spec_test_mapping(&o, &w);
    static const char *const listed[] = {
        "ORU^R01", "OUL^R22", "OUL^R23", "OUL^R24", "ORM^O01", "OML^O21", "OMG^O19",
        "RDE^O11", "RDE^O25", "RDS^O13", "RAS^O17", "VXU^V04", "PPR^PC1", "PPR^PC2",
        "PPR^PC3", "BAR^P01", "BAR^P02", "BAR^P05", "BAR^P06", "BAR^P10", "BAR^P12",
        "DFT^P03", "DFT^P11", "ACK^R01", "MFN^M02", "REF^I12", NULL};
    char type[16], text[512];
    size_t n_checked = 0;
    for (int k = 0; k < 4 + 62 + 11 + 15; k++) {
        if (k < 4) /* a few of the listed ones, then ADT, MDM and SIU by number */
            snprintf(type, sizeof(type), "%s", listed[k]);
        else if (k < 4 + 62)
            snprintf(type, sizeof(type), "ADT^A%02d", k - 4 + 1);
        else if (k < 4 + 62 + 11)
            snprintf(type, sizeof(type), "MDM^T%02d", k - 4 - 62 + 1);
        else
            snprintf(type, sizeof(type), "SIU^S%02d", k - 4 - 62 - 11 + 12);
        if (!strncmp(type, "ADT^A5", 6) && type[6] >= '6' && type[6] <= '9')
            continue;
        int n = snprintf(text, sizeof(text),
                         "MSH|^~\\&|A|H|C|R|20240401080000||%s|M%d|P|2.5.1\rEVN||20240401080000\r"
                         "PID|1||4711^^^H||Doe^J||19700101|F\r",
                         type, k);
        const cg_row_t *rows;
        size_t n_out;
        cg_error_t e;
        cg_err_t rc = cg_mapping_worker_map(w, CG_INPUT_HL7V2, text, (size_t)n, &rows, &n_out, &e);
        if (rc)
            fail_msg("%s: %s: %s", type, e.stage ? e.stage : "?", e.text);
        n_checked++;
    }
    for (size_t k = 4; listed[k]; k++) {
        int n = snprintf(text, sizeof(text),
                         "MSH|^~\\&|A|H|C|R|20240401080000||%s|L%zu|P|2.5.1\rPID|1||4711^^^H||Doe^"
                         "J||19700101|F\r",
                         listed[k], k);
        const cg_row_t *rows;
        size_t n_out;
        cg_error_t e;
        if (cg_mapping_worker_map(w, CG_INPUT_HL7V2, text, (size_t)n, &rows, &n_out, &e))
            fail_msg("%s: %s: %s", listed[k], e.stage ? e.stage : "?", e.text);
        n_checked++;
    }
    printf("%zu message types have a declared handling\n", n_checked);
    const char *z = "MSH|^~\\&|A|H|C|R|20240401080000||ZZZ^Z01|Z1|P|2.5.1\rPID|1||4711^^^H\r";
    const cg_row_t *rows;
    size_t n_out;
    cg_error_t e;
    assert_int_equal(cg_mapping_worker_map(w, CG_INPUT_HL7V2, z, strlen(z), &rows, &n_out, &e),
                     CG_ERR_MAP);
    assert_string_equal(e.stage, "select");
    assert_non_null(strstr(e.text, "no spec takes ZZZ^Z01"));
    cg_mapping_worker_destroy(w);
    cg_mapping_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_message_has_a_declared_handling),
        cmocka_unit_test(test_listed_types_have_a_declared_handling),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
