/* pg_test_util.h - helpers for the tests that drive `cohortgate sink` against the real broker and
 * the real PostgreSQL server (test_pg_sink.c, test_pg_cohort_sink.c, test_pg_release.c).
 *
 * The checks use cmocka's assertions: call them from a test's thread. The binary is the one
 * CG_GATEWAY_BIN names (compiled into pg_test_util.c).
 */
#ifndef CG_TEST_PG_TEST_UTIL_H
#define CG_TEST_PG_TEST_UTIL_H

#include <stddef.h>
#include <sys/types.h>

#include <libpq-fe.h>

#include "kafka_util.h"

/* How long a sink may take to stop, or a wait for the database to catch up, in ms. */
#define PT_HANG_MS 120000

/* The connection to COHORTGATE_TEST_PG, open while pt_run_tests runs the tests. */
extern PGconn *pt_pg;

struct CMUnitTest;
/* A test's main: 77 (skipped, said on stdout) unless COHORTGATE_TEST_BOOTSTRAP and
 * COHORTGATE_TEST_PG are both set; 1 when the server cannot be reached (said on stderr); else
 * connects pt_pg, runs the group of tests and returns what cmocka returns. */
int pt_run_tests(const char *name, const struct CMUnitTest *tests, size_t n);
#define PT_RUN_TESTS(tests) pt_run_tests(#tests, tests, sizeof(tests) / sizeof((tests)[0]))

/* The first cell of a query as an integer (-1 when NULL); fails the test when it fails. */
long long pt_q_int(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The first cell of a query as text ("" when NULL), malloc'ed; fails the test when it fails. */
char *pt_q_text(const char *sql);
/* Runs a statement; fails the test when it fails. */
void pt_q_exec(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Runs a shell command; fails the test when it does not exit 0. */
void pt_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One case's names: name (unique, also the group id), topic name.<topic_suffix>, schema (name
 * with '-' and '.' as '_'), a fresh directory /tmp/<name> and the config's path in it. */
typedef struct pt_run {
    char name[96], topic[128], schema[96], dir[256], config[320];
} pt_run_t;

/* Prints what a hung wait needs to be understood: the database's sessions (what each waits for)
 * and locks, and the stacks of the sink processes running with r's config (gdb, when there). */
void pt_diagnose(const pt_run_t *r);
/* Fills r for a new case and creates its directory and its topic with partitions partitions. */
void pt_run_new(pt_run_t *r, const char *prefix, const char *topic_suffix, int partitions);
/* Writes a sink config for r to path: transaction_max_messages txn_max, commit_interval_ms
 * commit_ms; pg_more is more "pg" members, each after a comma (e.g. ", \"batch_rows\": 300"),
 * top_more more top-level members, each ending with a comma and a new line (or ""). The
 * connection string comes from the environment, as a deployment's would. */
void pt_write_config(const pt_run_t *r, const char *path, int txn_max, int commit_ms,
                     const char *pg_more, const char *top_more);
/* Removes r's directory and drops its schema. */
void pt_run_end(const pt_run_t *r);

/* Waits for a process (up to PT_HANG_MS: else kills it and fails) and returns its exit status
 * (128 + the signal when killed), saying where its log is (log may be NULL) when not 0. */
int pt_wait_status(pid_t pid, const char *log);
/* pt_wait_status, asserting 0. */
void pt_wait_exit(pid_t pid, const char *log);
/* `cohortgate sink -c config [extra] [--idle-exit 1500]` to its end, its output in log; its exit
 * status. */
int pt_sink(const char *config, const char *extra, int idle_exit, const char *log);
/* Starts `cohortgate sink -c r->config` (with --idle-exit idle_exit_ms unless 0), its output in
 * r->dir/log_name; its pid. */
pid_t pt_sink_start(const pt_run_t *r, const char *log_name, int idle_exit_ms);
/* SIGTERM, then pt_wait_exit. */
void pt_sink_stop(pid_t pid, const char *log);

/* The inputs the database holds offsets for: the sum of cg_offsets.next_offset. */
long long pt_committed(const pt_run_t *r);
/* Waits until the database holds at least n inputs' offsets (asserted after PT_HANG_MS). */
void pt_wait_committed(const pt_run_t *r, long long n);

/* Produces value keyed by key to topic (retrying while the queue is full). */
void pt_produce(rd_kafka_t *p, const char *topic, const char *key, const char *value);
/* Flushes p (asserting every record delivered) and destroys it. */
void pt_producer_close(rd_kafka_t *p);

#endif
