/* pg_test_util.c - helpers of the `cohortgate sink` tests (see pg_test_util.h). */
#include "pg_test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CG_GATEWAY_BIN
#error "CG_GATEWAY_BIN must name the cohortgate binary"
#endif

PGconn *pt_pg;

int pt_run_tests(const char *name, const struct CMUnitTest *tests, size_t n)
{
    if (!tk_bootstrap() || !getenv("COHORTGATE_TEST_PG")) {
        printf("skipped: set COHORTGATE_TEST_BOOTSTRAP and COHORTGATE_TEST_PG\n");
        return 77;
    }
    pt_pg = PQconnectdb(getenv("COHORTGATE_TEST_PG"));
    if (PQstatus(pt_pg) != CONNECTION_OK) {
        fprintf(stderr, "cannot connect: %s\n", PQerrorMessage(pt_pg));
        return 1;
    }
    PQclear(PQexec(pt_pg, "SET client_min_messages = warning"));
    int rc = _cmocka_run_group_tests(name, tests, n, NULL, NULL);
    PQfinish(pt_pg);
    pt_pg = NULL;
    return rc;
}

/* The statement fmt formats, run; fails the test unless its status is ok (or also ok2). */
static PGresult *queryv(ExecStatusType ok, ExecStatusType ok2, const char *fmt, va_list ap)
{
    char sql[4096];
    vsnprintf(sql, sizeof(sql), fmt, ap);
    PGresult *r = PQexec(pt_pg, sql);
    if (PQresultStatus(r) != ok && PQresultStatus(r) != ok2) {
        fprintf(stderr, "%s failed: %s\n%s\n", ok == PGRES_TUPLES_OK ? "query" : "statement", sql,
                PQerrorMessage(pt_pg));
        PQclear(r);
        fail();
    }
    return r;
}

static PGresult *query(ExecStatusType ok, ExecStatusType ok2, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PGresult *r = queryv(ok, ok2, fmt, ap);
    va_end(ap);
    return r;
}

long long pt_q_int(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PGresult *r = queryv(PGRES_TUPLES_OK, PGRES_TUPLES_OK, fmt, ap);
    va_end(ap);
    long long v = PQgetisnull(r, 0, 0) ? -1 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

char *pt_q_text(const char *sql)
{
    PGresult *r = query(PGRES_TUPLES_OK, PGRES_TUPLES_OK, "%s", sql);
    char *v = strdup(PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

void pt_q_exec(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PQclear(queryv(PGRES_COMMAND_OK, PGRES_TUPLES_OK, fmt, ap));
    va_end(ap);
}

void pt_sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (system(cmd) != 0) {
        fprintf(stderr, "failed: %s\n", cmd);
        fail();
    }
}

void pt_diagnose(const pt_run_t *r)
{
    char cmd[2048];
    fprintf(stderr, "---- diagnosis of %s: the database's sessions and locks, the sink's threads\n",
            r->name);
    snprintf(cmd, sizeof(cmd),
             "psql -X -q \"$COHORTGATE_TEST_PG\" -c \"SELECT pid, state, wait_event_type, "
             "wait_event, now() - xact_start AS in_xact, left(query, 160) AS query FROM "
             "pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()\" "
             "-c \"SELECT locktype, relation::regclass, mode, granted, pid, classid, objid FROM "
             "pg_locks WHERE NOT granted OR locktype = 'advisory'\" >&2; "
             "for p in $(pgrep -f -- '-c %s'); do echo \"sink $p:\" >&2; "
             "command -v gdb >/dev/null && timeout 60 gdb -p $p -batch -ex 'thread apply all bt' "
             "2>/dev/null | grep -E '^(Thread|#)' >&2; done",
             r->config);
    if (system(cmd) != 0)
        fprintf(stderr, "(the diagnosis itself failed)\n");
}

void pt_run_new(pt_run_t *r, const char *prefix, const char *topic_suffix, int partitions)
{
    memset(r, 0, sizeof(*r));
    tk_unique_name(r->name, sizeof(r->name), prefix);
    snprintf(r->topic, sizeof(r->topic), "%s.%s", r->name, topic_suffix);
    snprintf(r->schema, sizeof(r->schema), "%s", r->name);
    for (char *p = r->schema; *p; p++)
        if (*p == '-' || *p == '.')
            *p = '_';
    snprintf(r->dir, sizeof(r->dir), "/tmp/%s", r->name);
    assert_int_equal(mkdir(r->dir, 0700), 0);
    snprintf(r->config, sizeof(r->config), "%s/sink.json", r->dir);
    assert_int_equal(tk_create_topic(r->topic, partitions), 0);
}

void pt_write_config(const pt_run_t *r, const char *path, int txn_max, int commit_ms,
                     const char *pg_more, const char *top_more)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"group_id\": \"%s\", \"inputs\": [{\"topic\": \"%s\"}],\n"
            " \"output\": {\"sink\": \"pg\"},\n"
            " \"delivery\": {\"transaction_max_messages\": %d, \"commit_interval_ms\": %d},\n"
            " \"kafka\": {\"bootstrap.servers\": \"%s\", \"session.timeout.ms\": 6000},\n"
            " \"pg\": {\"conninfo_env\": \"COHORTGATE_TEST_PG\", \"schema\": \"%s\"%s},\n"
            "%s%s"
            " \"log\": {\"level\": \"info\"}}\n",
            r->name, r->topic, txn_max, commit_ms, tk_bootstrap(), r->schema, pg_more, top_more,
            /* a test that wants /metrics says so in top_more */
            strstr(top_more, "\"metrics\"") ? "" : " \"metrics\": {\"listen\": \"off\"},");
    assert_int_equal(fclose(f), 0);
}

void pt_run_end(const pt_run_t *r)
{
    pt_sh("rm -rf '%s'", r->dir);
    pt_q_exec("DROP SCHEMA IF EXISTS %s CASCADE", r->schema);
}

int pt_wait_status(pid_t pid, const char *log)
{
    int st;
    if (tk_wait_pid(pid, PT_HANG_MS, &st)) {
        kill(pid, SIGKILL);
        fprintf(stderr, "hung; log in %s\n", log ? log : "(none)");
        fail();
    }
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (rc)
        fprintf(stderr, "exited %d; log in %s\n", rc, log ? log : "(none)");
    return rc;
}

void pt_wait_exit(pid_t pid, const char *log)
{
    assert_int_equal(pt_wait_status(pid, log), 0);
}

int pt_sink(const char *config, const char *extra, int idle_exit, const char *log)
{
    char *argv[8] = {(char *)CG_GATEWAY_BIN, (char *)"sink", (char *)"-c", (char *)config};
    int n = 4;
    if (extra)
        argv[n++] = (char *)extra;
    if (idle_exit) {
        argv[n++] = (char *)"--idle-exit";
        argv[n++] = (char *)"1500";
    }
    argv[n] = NULL;
    pid_t pid = tk_spawn(argv, log, NULL);
    assert_true(pid > 0);
    return pt_wait_status(pid, log);
}

pid_t pt_sink_start(const pt_run_t *r, const char *log_name, int idle_exit_ms)
{
    char log[400], idle[16];
    snprintf(log, sizeof(log), "%s/%s", r->dir, log_name);
    snprintf(idle, sizeof(idle), "%d", idle_exit_ms);
    char *argv[] = {(char *)CG_GATEWAY_BIN,
                    (char *)"sink",
                    (char *)"-c",
                    (char *)r->config,
                    idle_exit_ms ? (char *)"--idle-exit" : NULL,
                    idle,
                    NULL};
    pid_t pid = tk_spawn(argv, log, NULL);
    assert_true(pid > 0);
    return pid;
}

void pt_sink_stop(pid_t pid, const char *log)
{
    kill(pid, SIGTERM);
    pt_wait_exit(pid, log);
}

long long pt_committed(const pt_run_t *r)
{
    return pt_q_int("SELECT coalesce(sum(next_offset), 0) FROM %s.cg_offsets", r->schema);
}

void pt_wait_committed(const pt_run_t *r, long long n)
{
    int64_t until = tk_now_ms() + PT_HANG_MS;
    while (pt_committed(r) < n && tk_now_ms() < until)
        usleep(20000);
    if (pt_committed(r) < n)
        pt_diagnose(r);
    assert_true(pt_committed(r) >= n);
}

void pt_produce(rd_kafka_t *p, const char *topic, const char *key, const char *value)
{
    rd_kafka_resp_err_t err;
    while ((err = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                                    RD_KAFKA_V_VALUE((void *)value, strlen(value)),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(p, 100);
    assert_int_equal(err, 0);
}

void pt_producer_close(rd_kafka_t *p)
{
    assert_int_equal(rd_kafka_flush(p, 30000), 0);
    rd_kafka_destroy(p);
}
