/* test_spec_fastpaths.c - the evaluator's fast paths, each against the general path it stands
 * for: the same rows (or the same answer) from a fused pass and rules alone, memos and the values
 * they memoize, short-value checks and the decoder, canonical columns and every column checked,
 * anchored places and --trace, regex byte filters and the regex, system memos and the lookup. */
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
    cg_specset_t *ss = spec_test_load(text, "guards.json");
    assert_int_equal(ss->specs[0].rules[0].fuse_n, 4); /* the four in one pass */
    /* the guards on OBX-2 (rules 0, 2 and 3) as one table; rule 1's on OBX-11 apart */
    assert_non_null(ss->specs[0].rules[0].fuse_tab);
    assert_int_equal(ss->specs[0].rules[0].fuse_tab->rules, 0xD);
    cg_mapper_t *mp = spec_test_mapper(ss);
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
        cg_specset_t *ss1 = spec_test_load(one, "guard.json");
        assert_int_equal(ss1->specs[0].rules[0].fuse_n, 0);
        cg_mapper_t *mp1 = spec_test_mapper(ss1);
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

/* A fused pass puts its rows in rule order through the mapper's spare row array, which then
 * becomes its rows: the rows made before the pass stay first and whole, and the next messages
 * through the same mapper (more rows, so both arrays grow; fewer) get their own rows. */
static void test_fused_rows_swap(void **state)
{
    (void)state;
#define SWAP_RULE(name, type)                                                                      \
    "  {\"name\": \"" name "\", \"table\": \"measurement\", \"foreach\": \"OBX[*]\",\n"            \
    "   \"when\": {\"in\": [\"OBX-2\", [\"" type "\"]]},\n"                                        \
    "   \"columns\": {\"person_id\": {\"patient\": \"person_id\"},\n"                              \
    "     \"measurement_concept_id\": 0, \"measurement_type_concept_id\": 32817,\n"                \
    "     \"measurement_date\": {\"const\": \"2024-03-14\"}, \"value_source_value\": \"OBX-5\"}}"
    const char *spec = "{\"spec\": \"swap\", \"version\": 1,\n"
                       " \"input\": {\"format\": \"hl7v2\", \"messages\": [\"ORU^R01\"]},\n"
                       " \"patient\": {\"id\": \"PID-3.1\", \"authority\": \"PID-3.4.1\"},\n"
                       " \"rules\": [\n"
                       "  {\"name\": \"prov\", \"table\": \"provider\",\n"
                       "   \"columns\": {\"provider_id\": {\"const\": \"7\"}, \"provider_name\": "
                       "\"MSH-4\"}},\n" SWAP_RULE("nm", "NM") ",\n" SWAP_RULE(
                           "st", "ST") ",\n" SWAP_RULE("ce", "CE") "]}\n";
#undef SWAP_RULE
    cg_specset_t *ss = spec_test_load(spec, "swap.json");
    assert_int_equal(ss->specs[0].rules[1].fuse_n, 3);
    cg_mapper_t *mp = spec_test_mapper(ss);
    static const char *types[] = {"CE", "ST", "NM"};
    size_t sizes[] = {7, 40, 5, 40};
    for (size_t round = 0; round < sizeof(sizes) / sizeof(sizes[0]); round++) {
        size_t nobx = sizes[round];
        char *msg = malloc(256 + 64 * nobx);
        assert_non_null(msg);
        int o = sprintf(msg,
                        "MSH|^~\\&|LAB|HOSP%zu|CG|RES|20240314101500||ORU^R01|M7%zu|P|2.5.1\r"
                        "PID|1||777^^^HOSP^MR\r",
                        round, round);
        for (size_t i = 0; i < nobx; i++) /* the types in turn, so the pass's rows interleave */
            o += sprintf(msg + o, "OBX|%zu|%s|1^A^LN||v%zu.%zu\r", i + 1, types[(i + round) % 3],
                         round, i);
        const cg_row_t *rows;
        size_t n;
        cg_error_t me;
        assert_int_equal(cg_mapper_map_hl7(mp, msg, strlen(msg), &rows, &n, &me), CG_OK);
        assert_int_equal(n, 1 + nobx);
        assert_string_equal(rows[0].rule, "prov");
        const cg_value_t *pv = cg_row_value_named(&rows[0], "provider_name");
        char hosp[16];
        snprintf(hosp, sizeof(hosp), "HOSP%zu", round);
        assert_int_equal(pv->len, strlen(hosp));
        assert_memory_equal(pv->ptr, hosp, pv->len);
        /* then nm's rows, st's, ce's, each in OBX order */
        static const char *order[] = {"nm", "st", "ce"};
        static const char *otype[] = {"NM", "ST", "CE"};
        size_t r = 1;
        for (size_t k = 0; k < 3; k++)
            for (size_t i = 0; i < nobx; i++) {
                if (strcmp(types[(i + round) % 3], otype[k]))
                    continue;
                assert_true(r < n);
                assert_string_equal(rows[r].rule, order[k]);
                char want[32];
                snprintf(want, sizeof(want), "v%zu.%zu", round, i);
                const cg_value_t *v = cg_row_value_named(&rows[r], "value_source_value");
                assert_int_equal(v->len, strlen(want));
                assert_memory_equal(v->ptr, want, v->len);
                r++;
            }
        assert_int_equal(r, n);
        free(msg);
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
    cg_specset_t *ss = spec_test_load(spec, "times.json");
    cg_mapper_t *mp = spec_test_mapper(ss);
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

/* A value of no more bytes than a "truncate" limit or a varchar column's length is its own
 * result without the walk over its characters; longer ones are cut at a character boundary,
 * multi-byte characters counted as one. */
static void test_truncate_short_values(void **state)
{
    (void)state;
    const char *spec =
        "{\"spec\": \"cut\", \"version\": 1,\n"
        " \"input\": {\"format\": \"hl7v2\", \"messages\": [\"ORU^R01\"]},\n"
        " \"patient\": {\"id\": \"PID-3.1\", \"authority\": \"PID-3.4.1\"},\n"
        " \"rules\": [\n"
        "  {\"name\": \"t\", \"table\": \"measurement\", \"foreach\": \"OBX[*]\",\n"
        "   \"columns\": {\"person_id\": {\"patient\": \"person_id\"},\n"
        "     \"measurement_concept_id\": 0, \"measurement_type_concept_id\": 32817,\n"
        "     \"measurement_date\": {\"const\": \"2024-03-14\"},\n"
        "     \"unit_source_value\": {\"path\": \"OBX-5\", \"pipe\": [{\"truncate\": 3}]},\n"
        "     \"value_source_value\": \"OBX-5\"}}]}\n";
    cg_specset_t *ss = spec_test_load(spec, "cut.json");
    cg_mapper_t *mp = spec_test_mapper(ss);
    char e25[64] = "", e51[128] = "", e50[128] = ""; /* 25, 51 and 50 times U+00E9 */
    for (int i = 0; i < 51; i++) {
        if (i < 25)
            strcat(e25, "\xC3\xA9");
        if (i < 50)
            strcat(e50, "\xC3\xA9");
        strcat(e51, "\xC3\xA9");
    }
    const char *in[] = {"ab",
                        "abc",
                        "abcd",
                        "\xC3\xA9",
                        "\xC3\xA9\xC3\xA9",
                        "\xC3\xA9\xC3\xA9\xC3\xA9",
                        "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9",
                        "a\xC3\xA9\xC3\xA9",
                        e25,
                        e51};
    const char *cut3[] = {"ab",
                          "abc",
                          "abc",
                          "\xC3\xA9",
                          "\xC3\xA9\xC3\xA9",
                          "\xC3\xA9\xC3\xA9\xC3\xA9",
                          "\xC3\xA9\xC3\xA9\xC3\xA9",
                          "a\xC3\xA9\xC3\xA9",
                          "\xC3\xA9\xC3\xA9\xC3\xA9",
                          "\xC3\xA9\xC3\xA9\xC3\xA9"};
    const char *cut50[] = {"ab",
                           "abc",
                           "abcd",
                           "\xC3\xA9",
                           "\xC3\xA9\xC3\xA9",
                           "\xC3\xA9\xC3\xA9\xC3\xA9",
                           "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9",
                           "a\xC3\xA9\xC3\xA9",
                           e25,
                           e50};
    size_t nin = sizeof(in) / sizeof(in[0]);
    char msg[2048];
    int o = snprintf(msg, sizeof(msg),
                     "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|M62|P|2.5.1|||||"
                     "|UNICODE UTF-8\rPID|1||777^^^HOSP^MR\r");
    for (size_t i = 0; i < nin; i++)
        o += snprintf(msg + o, sizeof(msg) - (size_t)o, "OBX|%zu|ST|1^A^LN||%s\r", i + 1, in[i]);
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    assert_int_equal(cg_mapper_map_hl7(mp, msg, strlen(msg), &rows, &n, &me), CG_OK);
    assert_int_equal(n, nin);
    for (size_t i = 0; i < nin; i++) {
        const cg_value_t *u = cg_row_value_named(&rows[i], "unit_source_value");
        const cg_value_t *v = cg_row_value_named(&rows[i], "value_source_value");
        assert_int_equal(u->len, strlen(cut3[i]));
        assert_memory_equal(u->ptr, cut3[i], u->len);
        assert_int_equal(v->len, strlen(cut50[i]));
        assert_memory_equal(v->ptr, cut50[i], v->len);
    }
    cg_mapper_destroy(mp);
    cg_specset_destroy(ss);
}

/* A rule's rows name the columns they may hold (cg_row_t.cols: its key and columns, ascending)
 * and the encoder looks at those alone: the same records as from every column, for a rule
 * with a generated key, one that sets its key itself, a null and a delete. */
static void test_row_cols(void **state)
{
    (void)state;
    const char *spec =
        "{\"spec\": \"cols\", \"version\": 1,\n"
        " \"input\": {\"format\": \"hl7v2\", \"messages\": [\"ORU^R01\"]},\n"
        " \"patient\": {\"id\": \"PID-3.1\", \"authority\": \"PID-3.4.1\"},\n"
        " \"rules\": [\n"
        "  {\"name\": \"m\", \"table\": \"measurement\", \"foreach\": \"OBX[*]\",\n"
        "   \"delete_when\": {\"in\": [\"OBX-11\", [\"D\"]]},\n"
        "   \"columns\": {\"value_source_value\": \"OBX-5\", \"person_id\": {\"patient\": "
        "\"person_id\"},\n"
        "     \"measurement_concept_id\": 0, \"measurement_type_concept_id\": 32817,\n"
        "     \"unit_source_value\": \"OBX-6\",\n"
        "     \"measurement_date\": {\"path\": \"OBX-14\", \"pipe\": [\"date\"]}}},\n"
        "  {\"name\": \"p\", \"table\": \"provider\",\n"
        "   \"columns\": {\"provider_id\": {\"const\": \"42\"}, \"provider_name\": \"MSH-4\"}}]}\n";
    cg_specset_t *ss = spec_test_load(spec, "cols.json");
    cg_mapper_t *mp = spec_test_mapper(ss);
    const char *msg = "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01|M63|P|2.5.1\r"
                      "PID|1||777^^^HOSP^MR\r"
                      "OBX|1|NM|1^A^LN||7|mg|||||F|||20240314093000\r"
                      "OBX|2|NM|1^A^LN||||||||F|||20240314093000\r"
                      "OBX|3|NM|1^A^LN||8|mg|||||D|||20240314093000\r";
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    cg_err_t mrc = cg_mapper_map_hl7(mp, msg, strlen(msg), &rows, &n, &me);
    if (mrc)
        fprintf(stderr, "%s: %s %s: %s\n", me.stage, me.rule, me.out_column, me.text);
    assert_int_equal(mrc, CG_OK);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++) {
        const cg_row_t *r = &rows[i];
        assert_non_null(r->cols);
        assert_true(r->n_cols < r->table->n_columns); /* fewer than the table's */
        for (size_t k = 1; k < r->n_cols; k++)
            assert_true(r->cols[k - 1] < r->cols[k]);
        cg_row_t every = *r;
        every.cols = NULL;
        every.n_cols = 0;
        char *a = strdup(encoded(r, CG_ROW_ENCODE_TRACE, "")),
             *b = strdup(encoded(&every, CG_ROW_ENCODE_TRACE, ""));
        assert_string_equal(a, b);
        free(a);
        free(b);
    }
    /* the cases above were met: a delete, a null, the provider's own key */
    size_t deletes = 0, nulls = 0, providers = 0;
    for (size_t i = 0; i < n; i++) {
        deletes += rows[i].op == CG_ROW_DELETE;
        nulls += strstr(row_json(&rows[i]), "\"value_source_value\":null") != NULL;
        providers += strstr(row_json(&rows[i]), "\"provider_id\":42") != NULL;
    }
    assert_int_equal(deletes, 1);
    assert_int_equal(nulls, 1);
    assert_int_equal(providers, 1);
    cg_mapper_destroy(mp);
    cg_specset_destroy(ss);
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
    cg_specset_t *ss = spec_test_load(spec, "short.json");
    cg_mapper_t *mp = spec_test_mapper(ss);
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
    cg_specset_t *ss = spec_test_load(spec, "canon.json");
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
        cg_mapper_t *mp = spec_test_mapper(ss);
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
    cg_specset_t *ss = spec_test_load(spec, "places.json");
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
        cg_mapper_t *mp = spec_test_mapper(ss);
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
    cg_specset_t *ss = spec_test_load(spec, "systems.json");
    cg_mapper_t *mp = spec_test_mapper(ss);
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
    cg_specset_t *ss = spec_test_load(spec, "shared.json");
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
    cg_mapper_t *mp = spec_test_mapper(ss);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_guards_share_a_read),
        cmocka_unit_test(test_times_by_text),
        cmocka_unit_test(test_short_values_decoded),
        cmocka_unit_test(test_canonical_columns),
        cmocka_unit_test(test_anchored_places),
        cmocka_unit_test(test_regex_needed_byte),
        cmocka_unit_test(test_lookup_systems),
        cmocka_unit_test(test_same_text),
        cmocka_unit_test(test_anchored_shared),
        cmocka_unit_test(test_truncate_short_values),
        cmocka_unit_test(test_row_cols),
        cmocka_unit_test(test_fused_rows_swap),
    };
    return cmocka_run_group_tests(tests, spec_test_setup, spec_test_teardown);
}
