/* test_row.c - typed rows and the targets' encoders: the JSON envelope byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "cg_row.h"
#include "cg_target.h"

/* A row of table with (column, kind, text) cells; other columns absent. */
static void set(const cg_target_table_t *t, cg_value_t *vals, const char *column, uint32_t kind,
                const char *text)
{
    const cg_target_column_t *c = cg_target_column(t, column);
    assert_non_null(c);
    vals[c->index] = (cg_value_t){text, text ? (uint32_t)strlen(text) : 0, (uint8_t)kind, 0, 0};
}

static void test_registry(void **state)
{
    (void)state;
    assert_non_null(cg_target_at(0));
    assert_null(cg_target_find("fhir-r5"));
    const cg_target_t *omop = cg_target_find("omop-cdm-5.4");
    assert_non_null(omop);
    const cg_target_table_t *m = cg_target_table(omop, "measurement");
    assert_non_null(m);
    assert_ptr_equal(m->target, omop);
    assert_non_null(m->pk);
    assert_string_equal(m->pk->name, "measurement_id");
    assert_int_equal(m->pk->index, 0);
    const cg_target_column_t *c = cg_target_column(m, "value_as_number");
    assert_non_null(c);
    assert_int_equal(c->type, CG_COL_NUMBER);
    assert_ptr_equal(c->table, m);
    assert_ptr_equal(&m->columns[c->index], c);
    assert_int_equal(c->json_key_len, strlen("\"value_as_number\":"));
    assert_memory_equal(c->json_key, "\"value_as_number\":", c->json_key_len);
    assert_int_equal(cg_target_column(m, "person_id")->type, CG_COL_INT64);
    assert_int_equal(cg_target_column(m, "measurement_concept_id")->type, CG_COL_INT32);
    assert_int_equal(cg_target_column(m, "measurement_source_value")->type, CG_COL_VARCHAR);
    assert_int_equal(cg_target_column(m, "measurement_source_value")->max_length, 50);
    char why[160];
    assert_false(cg_target_check(cg_target_column(m, "measurement_date"), "2024-02-30", 10, true,
                                 why, sizeof(why)));
    /* cohortgate's own tables: another target, found by name across targets */
    const cg_target_table_t *pm = cg_target_table_any("cohortgate.person_merge");
    assert_non_null(pm);
    assert_string_equal(pm->target->name, "cohortgate");
    assert_null(cg_target_table(omop, "cohortgate.person_merge"));
    assert_ptr_equal(cg_target_table_any("measurement"), m);
    /* the person column is the target's to name: the spec compiler asks for it */
    assert_ptr_equal(m->person, cg_target_column(m, "person_id"));
    assert_ptr_equal(pm->person, cg_target_column(pm, "person_id"));
    assert_null(cg_target_table(omop, "concept")->person);
    char what[200];
    assert_string_equal(cg_target_what_list(-1, what, sizeof(what)),
                        "an OMOP CDM v5.4 table or a cohortgate.* table");
    assert_string_equal(cg_target_what_list(CG_ROW_UPSERT, what, sizeof(what)),
                        "an OMOP CDM v5.4 table");
}

static void test_envelope(void **state)
{
    (void)state;
    const cg_target_table_t *t = cg_target_table_any("measurement");
    cg_value_t vals[64] = {{0}};
    set(t, vals, "value_as_number", CG_VALUE_NUMBER, "7.2");
    cg_row_meta_t meta[] = {{.name = "status", .value = {"F", 1, CG_VALUE_STRING, 1, 0}}};
    cg_row_t row = {.table = t,
                    .values = vals,
                    .meta = meta,
                    .n_meta = 1,
                    .spec = "hl7v2-oru-omop",
                    .spec_version = 3,
                    .rule = "obx-numeric",
                    .message_id = CG_SLICE_LIT("MSG00042"),
                    .source_time = CG_SLICE_LIT("2024-03-14T10:15:00")};
    const char *cohorts[] = {"t2dm", "ckd"};
    cg_row_source_t src = {.topic = "hosp-a.hl7", .partition = 3, .offset = 118273};
    cg_buf_t b;
    cg_buf_init(&b);
    assert_int_equal(cg_row_encode(&row, &src, cohorts, 2, 0, &b), CG_OK);
    assert_string_equal(
        b.data, "{\"standard\":\"omop-cdm-5.4\",\"table\":\"measurement\",\"op\":\"upsert\","
                "\"cohorts\":[\"t2dm\","
                "\"ckd\"],\"row\":{\"value_as_number\":7.2},\"meta\":{\"status\":\"F\"},\"source\":"
                "{\"topic\":\"hosp-a.hl7\","
                "\"partition\":3,\"offset\":118273,\"message_id\":\"MSG00042\",\"time\":"
                "\"2024-03-14T10:15:00\",\"spec\":"
                "\"hl7v2-oru-omop\",\"spec_version\":3,\"rule\":\"obx-numeric\"}}");
    cg_buf_free(&b);
}

/* Columns in the table's order, nulls written, absent columns left out, strings escaped, trace
 * after the source; appended to what the buffer holds. */
static void test_envelope_values_and_trace(void **state)
{
    (void)state;
    const cg_target_table_t *t = cg_target_table_any("observation");
    cg_value_t vals[64] = {{0}};
    const char *trace[64] = {0};
    set(t, vals, "value_as_string", CG_VALUE_STRING, "a \"q\"\n\xff");
    set(t, vals, "observation_id", CG_VALUE_INTEGER, "-12");
    set(t, vals, "observation_date", CG_VALUE_DATE, "2024-03-14");
    set(t, vals, "provider_id", CG_VALUE_NULL, NULL);
    trace[cg_target_column(t, "observation_id")->index] = "row id";
    trace[cg_target_column(t, "value_as_string")->index] = "OBX-5";
    cg_row_t row = {.table = t,
                    .op = CG_ROW_DELETE,
                    .values = vals,
                    .spec = "s",
                    .spec_version = 1,
                    .rule = "r",
                    .message_id = CG_SLICE_LIT("M\"1"),
                    .trace = trace};
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_puts(&b, "x");
    assert_int_equal(cg_row_encode(&row, NULL, NULL, 0, CG_ROW_ENCODE_TRACE, &b), CG_OK);
    assert_string_equal(
        b.data,
        "x{\"standard\":\"omop-cdm-5.4\",\"table\":\"observation\",\"op\":\"delete\","
        "\"cohorts\":[],\"row\":{"
        "\"observation_id\":-12,\"observation_date\":\"2024-03-14\",\"value_as_string\":"
        "\"a \\\"q\\\"\\n\xef\xbf\xbd\",\"provider_id\":null},\"source\":{\"message_id\":"
        "\"M\\\"1\",\"spec\":\"s\",\"spec_version\":1,\"rule\":\"r\"},\"trace\":{"
        "\"observation_id\":{\"rule\":\"r\",\"source\":\"row id\"},\"observation_date\":{\"rule\":"
        "\"r\",\"source\":\"\"},\"value_as_string\":{\"rule\":\"r\",\"source\":\"OBX-5\"},"
        "\"provider_id\":{\"rule\":\"r\",\"source\":\"\"}}}");
    assert_int_equal(b.len, strlen(b.data));
    const cg_value_t *v = cg_row_value_named(&row, "observation_date");
    assert_non_null(v);
    assert_int_equal(v->kind, CG_VALUE_DATE);
    assert_null(cg_row_value_named(&row, "nope"));
    cg_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_envelope_values_and_trace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
