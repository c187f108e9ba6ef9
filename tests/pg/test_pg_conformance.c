/* test_pg_conformance.c - cohortgate's OMOP CDM v5.4 DDL in a real PostgreSQL, and the loader
 * that later tests feed mapped rows into: valid rows with 63-bit ids all insert; each kind of
 * non-conforming row (missing required column, varchar too long, bad date, text in an integer
 * column, a hashed id in a concept-id column, a repeated primary key) is refused with the
 * expected reason. Needs COHORTGATE_TEST_PG (tests/scripts/postgres.sh start DIR).
 *
 * tests/fixtures/omop/invalid.ndjson carries its expectations: an envelope's "expect" object
 * names the SQLSTATE, the column, a piece of the message, and whether cohortgate's own checker
 * (cg_omop_check_row) must refuse the row too ("check", default true). Lines without "expect"
 * must insert. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <jansson.h>

#include "cg_omop.h"
#include "omop_load.h"

#define VALID   CG_TEST_FIXTURES "/omop/valid.ndjson"
#define INVALID CG_TEST_FIXTURES "/omop/invalid.ndjson"

static cg_omop_loader_t *new_loader(void)
{
    char err[1024];
    cg_omop_load_options_t opt = {.conninfo = getenv("COHORTGATE_TEST_PG"), .report = stderr};
    cg_omop_loader_t *l = cg_omop_loader_new(&opt, err, sizeof err);
    if (!l)
        fail_msg("loader: %s", err);
    return l;
}

/* the first value of a one-row query with text parameters */
static char *query1(PGconn *conn, const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        fprintf(stderr, "query failed: %s\n%s\n", sql, PQerrorMessage(conn));
        PQclear(res);
        fail();
    }
    char *v = strdup(PQgetisnull(res, 0, 0) ? "NULL" : PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

static void assert_query(PGconn *conn, const char *sql, const char *param, const char *expected)
{
    const char *params[] = {param};
    char *v = query1(conn, sql, param ? 1 : 0, params);
    if (strcmp(v, expected) != 0) {
        fprintf(stderr, "%s [%s]: got %s, expected %s\n", sql, param ? param : "", v, expected);
        free(v);
        fail();
    }
    free(v);
}

/* runs fn on every JSON line of path with its 1-based number */
static void for_each_line(const char *path, void (*fn)(long line, json_t *env, void *arg),
                          void *arg)
{
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    char *buf = NULL;
    size_t cap = 0;
    long line = 0;
    while (getline(&buf, &cap, f) >= 0) {
        line++;
        json_t *env = json_loads(buf, 0, NULL);
        fn(line, env, arg); /* env NULL for a line that is not JSON (or blank) */
        json_decref(env);
    }
    free(buf);
    fclose(f);
}

static void check_valid_row(long line, json_t *env, void *arg)
{
    (void)arg;
    const char *standard = json_string_value(json_object_get(env, "standard"));
    if (!env || !standard || strcmp(standard, "omop-cdm-5.4") != 0)
        return;
    const cg_omop_table_t *t = cg_omop_table(json_string_value(json_object_get(env, "table")));
    assert_non_null(t);
    char why[512];
    if (cg_omop_check_row(t, json_object_get(env, "row"), why, sizeof why) != 0)
        fail_msg("valid.ndjson:%ld: cohortgate's checker refuses a row PostgreSQL takes: %s", line,
                 why);
}

static void test_valid_rows_insert(void **state)
{
    (void)state;
    cg_omop_loader_t *l = new_loader();
    PGconn *conn = cg_omop_loader_conn(l);
    const char *schema = cg_omop_loader_schema(l);
    assert_int_equal(cg_omop_loader_load_file(l, VALID), 0);
    for (size_t i = 0; i < cg_omop_loader_n_failures(l); i++) {
        const cg_omop_load_failure_t *f = cg_omop_loader_failure(l, i);
        fprintf(stderr, "unexpected failure %s:%ld %s %s %s\n", f->origin, f->line, f->table,
                f->sqlstate, f->message);
    }
    assert_int_equal(cg_omop_loader_n_failures(l), 0);
    assert_int_equal(cg_omop_loader_inserted(l, "person"), 2);
    assert_int_equal(cg_omop_loader_inserted(l, "visit_occurrence"), 1);
    assert_int_equal(cg_omop_loader_inserted(l, "condition_occurrence"), 2);
    assert_int_equal(cg_omop_loader_inserted(l, "measurement"), 3);
    assert_int_equal(cg_omop_loader_inserted(l, "observation"), 1);
    assert_int_equal(cg_omop_loader_inserted(l, "drug_exposure"), 1);
    assert_int_equal(cg_omop_loader_inserted(l, "death"), 1);
    assert_int_equal(cg_omop_loader_inserted(l, NULL), 11);
    assert_int_equal(cg_omop_loader_skipped(l), 1);
    cg_omop_loader_print_summary(l, stdout);

    /* what PostgreSQL stored: 63-bit ids, characters not bytes, numbers as sent */
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT char_length(person_source_value) || '/' || octet_length(person_source_value) "
             "FROM \"%s\".person WHERE person_id = $1::bigint",
             schema);
    assert_query(conn, sql, "9223372036854775807", "50/100");
    snprintf(sql, sizeof sql,
             "SELECT value_as_number::text || ' ' || measurement_datetime::text FROM "
             "\"%s\".measurement WHERE measurement_id = $1::bigint",
             schema);
    assert_query(conn, sql, "8734165230923456789", "7.2 2024-03-14 10:30:00");
    snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\".measurement WHERE person_id = $1",
             schema);
    assert_query(conn, sql, "4432190384471234567", "3");
    snprintf(sql, sizeof sql,
             "SELECT condition_source_value FROM \"%s\".condition_occurrence "
             "WHERE condition_occurrence_id = $1",
             schema);
    assert_query(conn, sql, "6100000000000000002",
                 "\xe7\xb3\x96\xe5\xb0\xbf\xe7\x97\x85\xe6\x80"
                 "\xa7\xe8\x82\xbe\xe7\x97\x85");

    /* cohortgate's own checker agrees with PostgreSQL on the valid rows */
    for_each_line(VALID, check_valid_row, NULL);
    cg_omop_loader_destroy(l);
}

struct expect_ctx {
    cg_omop_loader_t *loader;
    size_t expected_failures;
};

static const cg_omop_load_failure_t *failure_at(cg_omop_loader_t *l, long line)
{
    for (size_t i = 0; i < cg_omop_loader_n_failures(l); i++)
        if (cg_omop_loader_failure(l, i)->line == line)
            return cg_omop_loader_failure(l, i);
    return NULL;
}

static void check_expectation(long line, json_t *env, void *arg)
{
    struct expect_ctx *ctx = arg;
    const cg_omop_load_failure_t *f = failure_at(ctx->loader, line);
    if (!env) {
        /* a line that is not JSON */
        ctx->expected_failures++;
        if (!f || strcmp(f->sqlstate, "CGENV") != 0 || !strstr(f->message, "not JSON"))
            fail_msg("invalid.ndjson:%ld: a broken JSON line was not reported as such", line);
        return;
    }
    json_t *expect = json_object_get(env, "expect");
    if (!expect) {
        if (f)
            fail_msg("invalid.ndjson:%ld: a valid row failed: %s (%s)", line, f->message,
                     f->sqlstate);
        return;
    }
    ctx->expected_failures++;
    const char *sqlstate = json_string_value(json_object_get(expect, "sqlstate"));
    const char *column = json_string_value(json_object_get(expect, "column"));
    const char *message = json_string_value(json_object_get(expect, "message"));
    if (!f)
        fail_msg("invalid.ndjson:%ld: inserted, but expected SQLSTATE %s", line, sqlstate);
    printf("invalid.ndjson:%ld: refused as expected: %s: %s: %s (SQLSTATE %s)\n", line, f->table,
           f->column, f->message, f->sqlstate);
    if (strcmp(f->sqlstate, sqlstate) != 0)
        fail_msg("invalid.ndjson:%ld: SQLSTATE %s, expected %s (%s)", line, f->sqlstate, sqlstate,
                 f->message);
    if (column && strcmp(f->column, column) != 0)
        fail_msg("invalid.ndjson:%ld: column \"%s\", expected %s", line, f->column, column);
    if (message && !strstr(f->message, message))
        fail_msg("invalid.ndjson:%ld: message \"%s\" lacks \"%s\"", line, f->message, message);
    if (!strstr(f->origin, "invalid.ndjson"))
        fail_msg("failure origin %s", f->origin);

    /* the spec engine's checker must catch the same rows before they reach a database */
    json_t *check = json_object_get(expect, "check");
    if (!check || json_is_true(check)) {
        const cg_omop_table_t *t = cg_omop_table(json_string_value(json_object_get(env, "table")));
        char why[512];
        assert_non_null(t);
        if (cg_omop_check_row(t, json_object_get(env, "row"), why, sizeof why) == 0)
            fail_msg("invalid.ndjson:%ld: cohortgate's checker accepts a row PostgreSQL refuses",
                     line);
        printf("    checker: %s\n", why);
    }
}

static void test_invalid_rows_refused(void **state)
{
    (void)state;
    cg_omop_loader_t *l = new_loader();
    assert_int_equal(cg_omop_loader_load_file(l, INVALID), 0);
    struct expect_ctx ctx = {l, 0};
    for_each_line(INVALID, check_expectation, &ctx);
    assert_true(ctx.expected_failures >= 10);
    assert_int_equal(cg_omop_loader_n_failures(l), ctx.expected_failures);
    assert_int_equal(cg_omop_loader_inserted(l, NULL), 1);
    cg_omop_loader_destroy(l);
}

static void test_ddl_in_postgres(void **state)
{
    (void)state;
    cg_omop_loader_t *l = new_loader();
    PGconn *conn = cg_omop_loader_conn(l);
    char *schema = strdup(cg_omop_loader_schema(l));
    char n[16];
    snprintf(n, sizeof n, "%zu", cg_omop_table_count());
    assert_query(conn, "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
                 schema, n);
    assert_query(conn,
                 "SELECT count(*) FROM information_schema.table_constraints WHERE "
                 "constraint_schema = $1 AND constraint_type = 'FOREIGN KEY'",
                 schema, "0");
    assert_query(conn,
                 "SELECT count(*) FROM information_schema.table_constraints WHERE "
                 "constraint_schema = $1 AND constraint_type = 'PRIMARY KEY'",
                 schema, "28");
    /* every column as the CSV has it, with cohortgate's bigint ids */
    size_t cols = 0;
    for (size_t t = 0; t < cg_omop_table_count(); t++) {
        const cg_omop_table_t *tab = cg_omop_table_at(t);
        for (size_t c = 0; c < tab->n_columns; c++) {
            const cg_omop_column_t *col = &tab->columns[c];
            const char *params[] = {schema, tab->name, col->name};
            char *v = query1(conn,
                             "SELECT data_type || '/' || coalesce(character_maximum_length, 0) || "
                             "'/' || is_nullable FROM information_schema.columns WHERE "
                             "table_schema = $1 AND table_name = $2 AND column_name = $3",
                             3, params);
            char expected[128];
            static const char *const pg_names[] = {[CG_OMOP_INTEGER] = "integer",
                                                   [CG_OMOP_BIGINT] = "bigint",
                                                   [CG_OMOP_FLOAT] = "numeric",
                                                   [CG_OMOP_VARCHAR] = "character varying",
                                                   [CG_OMOP_TEXT] = "text",
                                                   [CG_OMOP_DATE] = "date",
                                                   [CG_OMOP_DATETIME] =
                                                       "timestamp without time zone"};
            snprintf(expected, sizeof expected, "%s/%d/%s", pg_names[cg_omop_column_type(col)],
                     col->max_length, col->required ? "NO" : "YES");
            if (strcmp(v, expected) != 0)
                fail_msg("%s.%s: %s in PostgreSQL, expected %s", tab->name, col->name, v, expected);
            free(v);
            cols++;
        }
    }
    assert_int_equal(cols, 432);
    cg_omop_loader_destroy(l);

    /* the loader drops its schema */
    char *dbconn = getenv("COHORTGATE_TEST_PG");
    PGconn *c2 = PQconnectdb(dbconn);
    assert_int_equal(PQstatus(c2), CONNECTION_OK);
    assert_query(c2, "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
                 schema, "0");
    PQfinish(c2);
    free(schema);
}

/* exit status of cg-omop-load on a file, and its standard output */
static int run_cli(const char *args, char *out, size_t size)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>/dev/null", CG_OMOP_LOAD_BIN, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    char rest[4096]; /* drain, or the tool dies of SIGPIPE */
    while (fread(rest, 1, sizeof rest, p) > 0)
        ;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void **state)
{
    (void)state;
    char out[4096];
    assert_int_equal(run_cli(VALID, out, sizeof out), 0);
    assert_non_null(strstr(out, "  measurement              3\n"));
    assert_non_null(strstr(out, "total: 11 inserted, 0 failed, 1 skipped"));
    assert_int_equal(run_cli("--strict " VALID, out, sizeof out), 0);
    assert_int_equal(run_cli("< " VALID, out, sizeof out), 0);
    assert_non_null(strstr(out, "total: 11 inserted"));
    assert_int_equal(run_cli(INVALID, out, sizeof out), 1);
    assert_non_null(strstr(out, "total: 1 inserted, 15 failed"));
    assert_int_equal(run_cli("--strict " INVALID, out, sizeof out), 1);
    assert_int_equal(run_cli("/nonexistent.ndjson", out, sizeof out), 1);
    assert_int_equal(run_cli("--conninfo 'host=127.0.0.1 port=1' " VALID, out, sizeof out), 2);
    assert_int_equal(run_cli("--ddl", out, sizeof out), 0);
    assert_non_null(strstr(out, "person_id bigint NOT NULL"));
}

int main(void)
{
    if (!getenv("COHORTGATE_TEST_PG") || !*getenv("COHORTGATE_TEST_PG")) {
        printf("SKIPPED: COHORTGATE_TEST_PG not set (run tests/scripts/postgres.sh start DIR)\n");
        return 77; /* ctest's SKIP_RETURN_CODE */
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ddl_in_postgres),
        cmocka_unit_test(test_valid_rows_insert),
        cmocka_unit_test(test_invalid_rows_refused),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
