/* circe_db.h - what the Circe tests in a real PostgreSQL share (test_pg_circe.c: circe-be's
 * conformance cases; test_pg_circe_golden.c: hand-computed memberships and `cohort run`):
 * their connection, a schema of every OMOP table without keys, rows loaded from circe-be's
 * dataset format. The checks use cmocka's assertions.
 */
#ifndef CG_TEST_CIRCE_DB_H
#define CG_TEST_CIRCE_DB_H

#include <stddef.h>

#include <jansson.h>
#include <libpq-fe.h>

/* The connection to COHORTGATE_TEST_PG, open while ct_run_tests runs the tests. */
extern PGconn *ct_db;

/* Runs a statement; fails the test when it fails. */
void ct_exec_ok(const char *sql);
/* Every OMOP table, its columns typed as cohortgate's DDL types them, no keys (circe-be's
 * fixtures repeat ids, as its own DDL allows), in a fresh schema. */
void ct_make_schema(const char *schema);
/* "cdm.person": [rows] of a dataset (circe-be's format) into schema; rel names it in errors. */
void ct_load_rows(const char *schema, json_t *root, const char *rel);

struct CMUnitTest;
/* A test's main: 77 (skipped, said on stdout) unless COHORTGATE_TEST_PG is set; 1 when the
 * server cannot be reached; else connects ct_db (DateStyle ISO), runs the group of tests and
 * returns what cmocka returns. */
int ct_run_tests(const char *name, const struct CMUnitTest *tests, size_t n);
#define CT_RUN_TESTS(tests) ct_run_tests(#tests, tests, sizeof(tests) / sizeof((tests)[0]))

#endif
