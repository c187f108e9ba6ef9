/* circe_db.c - what the Circe tests share (see circe_db.h). */
#include "circe_db.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cg_buf.h"
#include "cg_omop.h"

PGconn *ct_db;

void ct_exec_ok(const char *sql)
{
    PGresult *r = PQexec(ct_db, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("PostgreSQL: %s\nin: %.300s", PQerrorMessage(ct_db), sql);
    PQclear(r);
}

/* Every OMOP table, its columns typed as cohortgate's DDL types them, no keys. */
void ct_make_schema(const char *schema)
{
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_printf(&b,
                  "SET client_min_messages = warning; DROP SCHEMA IF EXISTS \"%s\" CASCADE; "
                  "CREATE SCHEMA \"%s\";\n",
                  schema, schema);
    for (size_t i = 0; i < cg_omop_table_count(); i++) {
        const cg_omop_table_t *t = cg_omop_table_at(i);
        cg_buf_printf(&b, "CREATE TABLE \"%s\".\"%s\" (", schema, t->name);
        for (size_t k = 0; k < t->n_columns; k++) {
            char ty[64];
            cg_buf_printf(&b, "%s\"%s\" %s", k ? ", " : "", t->columns[k].name,
                          cg_omop_pg_type(&t->columns[k], ty, sizeof ty));
        }
        cg_buf_puts(&b, ");\n");
    }
    ct_exec_ok(b.data);
    cg_buf_free(&b);
}

/* "cdm.person": [rows] of a dataset (circe-be's format) into schema; rel names it in errors. */
void ct_load_rows(const char *schema, json_t *root, const char *rel)
{
    const char *key;
    json_t *rows;
    json_object_foreach(root, key, rows)
    {
        const char *dot = strchr(key, '.');
        const char *table = dot ? dot + 1 : key;
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row)
        {
            cg_buf_t sql, vals;
            cg_buf_init(&sql);
            cg_buf_init(&vals);
            const char *params[64];
            char bufs[64][64];
            int n = 0;
            const char *col;
            json_t *v;
            cg_buf_printf(&sql, "INSERT INTO \"%s\".\"%s\" (", schema, table);
            const cg_omop_table_t *t = cg_omop_table(table);
            if (!t)
                fail_msg("%s: table %s is not an OMOP CDM v5.4 table", rel, table);
            json_object_foreach(row, col, v)
            {
                if (n == 64)
                    break;
                /* columns of CDM v5.2 that v5.4 dropped (observation_period's datetimes) */
                if (!cg_omop_column(t, col, NULL))
                    continue;
                const char *text;
                size_t len;
                bool quoted;
                assert_true(cg_omop_json_text(v, bufs[n], sizeof bufs[n], &text, &len, &quoted));
                params[n] = text;
                cg_buf_printf(&sql, "%s\"%s\"", n ? ", " : "", col);
                cg_buf_printf(&vals, "%s$%d", n ? ", " : "", n + 1);
                n++;
            }
            cg_buf_printf(&sql, ") VALUES (%s)", vals.data);
            PGresult *r = PQexecParams(ct_db, sql.data, n, NULL, params, NULL, NULL, 0);
            if (PQresultStatus(r) != PGRES_COMMAND_OK)
                fail_msg("%s: %s row %zu: %s", rel, table, i, PQerrorMessage(ct_db));
            PQclear(r);
            cg_buf_free(&sql);
            cg_buf_free(&vals);
        }
    }
}

int ct_run_tests(const char *name, const struct CMUnitTest *tests, size_t n)
{
    const char *conninfo = getenv("COHORTGATE_TEST_PG");
    if (!conninfo || !*conninfo) {
        printf("%s: skipped: COHORTGATE_TEST_PG is not set (tests/scripts/test.sh starts a "
               "server)\n",
               name);
        return 77;
    }
    ct_db = PQconnectdb(conninfo);
    if (PQstatus(ct_db) != CONNECTION_OK) {
        printf("%s: cannot connect: %s", name, PQerrorMessage(ct_db));
        return 1;
    }
    PQclear(PQexec(ct_db, "SET DateStyle = ISO"));
    int rc = _cmocka_run_group_tests(name, tests, n, NULL, NULL);
    PQfinish(ct_db);
    return rc;
}
