/* cli_cohort_admin.c - what an operator changes in a sink schema's cohort state:
 * `cohortgate cohort withdraw`, a withdrawal list (pseudonyms, one a line) into cg_withdrawn,
 * where `cohortgate sink` honours it (the person leaves every cohort and every disease schema,
 * with exit events, and later records do not bring them back); and `cohortgate cohort retire`,
 * a definition taken out of service: its members exit, its rows go. */
#include "cg_cli.h"

#include <getopt.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void withdraw_usage(FILE *out)
{
    fprintf(out,
            "usage: cohortgate cohort withdraw -c CONNINFO [--schema S] [--dry-run] FILE|-\n\n"
            "Withdraw consent for the persons of FILE (- reads standard input): one pseudonym\n"
            "(person_source_value, as the records carry it) a line; blank lines and lines\n"
            "starting with # are skipped, spaces around a pseudonym are dropped. They go into\n"
            "the schema's cg_withdrawn (made by `cohortgate sink --init`) in one transaction;\n"
            "a running `cohortgate sink` honours them within pg.cohorts.withdrawal_interval_ms\n"
            "(1 s) whether records come or not: each person leaves every cohort and every\n"
            "disease schema with an exit event, and later records never bring them back.\n"
            "A pseudonym already withdrawn is counted, not changed; one with no person in the\n"
            "schema yet is kept, so the person's first records are held out too.\n\n"
            "options:\n"
            "  -c, --db CONNINFO   libpq connection string, e.g. 'host=/tmp dbname=omop'\n"
            "  -s, --schema S      the sink's schema (default: the search_path's)\n"
            "  -n, --dry-run       read and check FILE, count, change nothing\n"
            "  -h, --help          show this help\n\n"
            "exit status: 0 done, 1 a line was refused or the database failed (nothing is\n"
            "written then), 2 bad command line\n");
}

/* The pseudonym on line (trimmed in place), NULL for a line to skip. */
static char *pseudonym_of(char *line)
{
    line[strcspn(line, "\r\n")] = '\0';
    while (*line == ' ' || *line == '\t')
        line++;
    size_t n = strlen(line);
    while (n && (line[n - 1] == ' ' || line[n - 1] == '\t'))
        line[--n] = '\0';
    return n && line[0] != '#' ? line : NULL;
}

/* A pseudonym is one token of printable ASCII: anything else is a file of something else. */
static const char *refusal(const char *p)
{
    if (strlen(p) > 256)
        return "longer than 256 characters";
    for (const char *c = p; *c; c++)
        if (*c <= ' ' || *c > '~')
            return "not a pseudonym (spaces or characters outside printable ASCII)";
    return NULL;
}

static int fail_db(PGconn *db, PGresult *r, const char *what)
{
    fprintf(stderr, "cohortgate cohort withdraw: %s: %s", what,
            r ? PQresultErrorMessage(r) : PQerrorMessage(db));
    PQclear(r);
    PQclear(PQexec(db, "ROLLBACK"));
    return CG_EXIT_FAILURE;
}

/* The options both actions take (--dry-run: withdraw only). CG_EXIT_OK to go on; else the
 * exit status (help shown: -1 mapped to OK by the caller). */
typedef struct admin_args {
    const char *conninfo, *schema;
    int dry;
} admin_args_t;

static int parse_args(int argc, char **argv, int dry_allowed, void (*usage)(FILE *),
                      admin_args_t *a)
{
    static const struct option longopts[] = {{"db", required_argument, NULL, 'c'},
                                             {"schema", required_argument, NULL, 's'},
                                             {"dry-run", no_argument, NULL, 'n'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    memset(a, 0, sizeof(*a));
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, dry_allowed ? "c:s:nh" : "c:s:h", longopts, NULL)) != -1) {
        if (ch == 'c') {
            a->conninfo = optarg;
        } else if (ch == 's') {
            a->schema = optarg;
        } else if (ch == 'n' && dry_allowed) {
            a->dry = 1;
        } else if (ch == 'h') {
            usage(stdout);
            return -1;
        } else {
            usage(stderr);
            return CG_EXIT_USAGE;
        }
    }
    return CG_EXIT_OK;
}

static int withdraw(int argc, char **argv)
{
    admin_args_t a;
    int st = parse_args(argc, argv, 1, withdraw_usage, &a);
    if (st)
        return st < 0 ? CG_EXIT_OK : st;
    const char *conninfo = a.conninfo, *schema = a.schema;
    int dry = a.dry;
    if (optind != argc - 1 || (!conninfo && !dry)) {
        fprintf(stderr, "cohortgate cohort withdraw: %s\n",
                optind != argc - 1 ? "one FILE (or -) is needed"
                                   : "-c/--db CONNINFO is required (or --dry-run)");
        return CG_EXIT_USAGE;
    }
    const char *path = argv[optind];
    FILE *in = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!in) {
        fprintf(stderr, "cohortgate cohort withdraw: %s: cannot open\n", path);
        return CG_EXIT_FAILURE;
    }
    /* read and check every line first: a bad file writes nothing */
    char **list = NULL;
    size_t n = 0, cap = 0;
    int bad = 0;
    char line[4096];
    for (long no = 1; fgets(line, sizeof(line), in); no++) {
        char *p = pseudonym_of(line);
        if (!p)
            continue;
        const char *why = refusal(p);
        if (why) {
            fprintf(stderr, "%s:%ld:1: %s\n", path, no, why);
            bad++;
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            char **grown = realloc(list, cap * sizeof(*list));
            if (!grown) {
                bad++;
                break;
            }
            list = grown;
        }
        if (!(list[n] = strdup(p))) {
            bad++;
            break;
        }
        n++;
    }
    if (in != stdin)
        fclose(in);
    int rc = CG_EXIT_OK;
    if (bad) {
        fprintf(stderr, "cohortgate cohort withdraw: %d line(s) refused; nothing written\n", bad);
        rc = CG_EXIT_FAILURE;
    } else if (dry) {
        printf("%zu pseudonym(s) read; nothing written (--dry-run)\n", n);
    } else {
        PGconn *db = PQconnectdb(conninfo);
        if (PQstatus(db) != CONNECTION_OK) {
            fprintf(stderr, "cohortgate cohort withdraw: cannot connect: %s", PQerrorMessage(db));
            rc = CG_EXIT_FAILURE;
        } else {
            char table[600];
            if (schema) {
                char *q = PQescapeIdentifier(db, schema, strlen(schema));
                snprintf(table, sizeof(table), "%s.cg_withdrawn", q ? q : "\"\"");
                PQfreemem(q);
            } else {
                snprintf(table, sizeof(table), "cg_withdrawn");
            }
            char sql[800];
            snprintf(sql, sizeof(sql),
                     "INSERT INTO %s (person_source_value) VALUES ($1) ON CONFLICT DO NOTHING",
                     table);
            PGresult *r = PQexec(db, "BEGIN");
            long added = 0;
            if (PQresultStatus(r) != PGRES_COMMAND_OK) {
                rc = fail_db(db, r, "BEGIN");
            } else {
                PQclear(r);
                r = PQprepare(db, "withdraw", sql, 1, NULL);
                if (PQresultStatus(r) != PGRES_COMMAND_OK)
                    rc = fail_db(db, r, table);
                else
                    PQclear(r);
                for (size_t i = 0; i < n && rc == CG_EXIT_OK; i++) {
                    const char *v[1] = {list[i]};
                    r = PQexecPrepared(db, "withdraw", 1, v, NULL, NULL, 0);
                    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
                        rc = fail_db(db, r, table);
                        break;
                    }
                    added += atol(PQcmdTuples(r));
                    PQclear(r);
                }
                if (rc == CG_EXIT_OK) {
                    r = PQexec(db, "COMMIT");
                    if (PQresultStatus(r) != PGRES_COMMAND_OK)
                        rc = fail_db(db, r, "COMMIT");
                    else
                        PQclear(r);
                }
            }
            if (rc == CG_EXIT_OK)
                printf("%ld pseudonym(s) withdrawn, %zu already withdrawn, into %s\n", added,
                       n - (size_t)added, table);
        }
        PQfinish(db);
    }
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
    return rc;
}

static void retire_usage(FILE *out)
{
    fprintf(out,
            "usage: cohortgate cohort retire -c CONNINFO [--schema S] ID...\n\n"
            "Take cohort definitions out of service in a sink's schema, each in one transaction\n"
            "under the sink's definition lock: every member gets an exit event in the outbox\n"
            "(cg_cohort_events, published by the running sink), and the definition's rows in\n"
            "`cohort`, its row in `cohort_definition` and its state (cg_cohort_state) go.\n"
            "Remove the definition from pg.cohorts.definitions first (and its schema from\n"
            "pg.cohorts.databases; drop that schema yourself): a sink that still has it\n"
            "evaluates it anew at its next start. The sink warns at start of definitions the\n"
            "schema holds that its config no longer names.\n\n"
            "options:\n"
            "  -c, --db CONNINFO   libpq connection string, e.g. 'host=/tmp dbname=omop'\n"
            "  -s, --schema S      the sink's schema (default: the search_path's)\n"
            "  -h, --help          show this help\n\n"
            "exit status: 0 done, 1 an ID unknown to the schema or the database failed (that\n"
            "definition unchanged), 2 bad command line\n");
}

/* One definition, in one transaction: exits, then its rows. 0, or -1 (said on stderr). */
static int retire_one(PGconn *db, const char *schema, const char *id)
{
    char q[80] = "";
    if (schema) {
        char *e = PQescapeIdentifier(db, schema, strlen(schema));
        snprintf(q, sizeof(q), "%s.", e ? e : "\"\"");
        PQfreemem(e);
    }
    char sql[4096];
    const char *p[2] = {id, schema ? schema : ""};
    PGresult *r = PQexec(db, "BEGIN");
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    /* the sink's definition lock: no start-time evaluation runs meanwhile */
    r = ok ? PQexecParams(db, "SELECT pg_advisory_xact_lock(hashtext('cohortgate:cohorts:' || $1))",
                          1, NULL, p + 1, NULL, NULL, 0)
           : NULL;
    ok = ok && PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    snprintf(
        sql, sizeof(sql),
        "SELECT (SELECT count(*) FROM %scg_cohort_state WHERE cohort_definition_id = "
        "$1::bigint) + (SELECT count(*) FROM %scohort WHERE cohort_definition_id = $1::bigint)",
        q, q);
    r = ok ? PQexecParams(db, sql, 1, NULL, p, NULL, NULL, 0) : NULL;
    ok = ok && PQresultStatus(r) == PGRES_TUPLES_OK;
    int known = ok && atoll(PQgetvalue(r, 0, 0)) > 0;
    PQclear(r);
    if (ok && !known) {
        fprintf(stderr,
                "cohortgate cohort retire: definition %s: the schema has no rows or state "
                "of it\n",
                id);
        PQclear(PQexec(db, "ROLLBACK"));
        return -1;
    }
    /* an exit for each member: the periods it had, none after; the pseudonym its person row
     * or its last event gives */
    snprintf(sql, sizeof(sql),
             "WITH m AS (SELECT subject_id AS p, min(cohort_start_date) AS s, "
             "max(cohort_end_date) AS e FROM %scohort WHERE cohort_definition_id = $1::bigint "
             "GROUP BY subject_id) INSERT INTO %scg_cohort_events (cohort_definition_id, "
             "definition_version, person_id, person_source_value, event, cohort_start_date, "
             "cohort_end_date, periods) SELECT $1::bigint, coalesce((SELECT definition_version "
             "FROM %scg_cohort_state WHERE cohort_definition_id = $1::bigint), 0), m.p, "
             "coalesce(pe.person_source_value, (SELECT v.person_source_value FROM "
             "%scg_cohort_events v WHERE v.cohort_definition_id = $1::bigint AND v.person_id = "
             "m.p AND v.person_source_value IS NOT NULL ORDER BY v.event_id DESC LIMIT 1)), "
             "'exit', m.s, m.e, '[]' FROM m LEFT JOIN %sperson pe ON pe.person_id = m.p ORDER BY "
             "m.p",
             q, q, q, q, q);
    r = ok ? PQexecParams(db, sql, 1, NULL, p, NULL, NULL, 0) : NULL;
    ok = ok && PQresultStatus(r) == PGRES_COMMAND_OK;
    long long exits = ok ? atoll(PQcmdTuples(r)) : 0;
    if (!ok)
        fprintf(stderr, "cohortgate cohort retire: definition %s: %s", id,
                r ? PQresultErrorMessage(r) : PQerrorMessage(db));
    PQclear(r);
    const char *tables[] = {"cohort", "cohort_definition", "cg_cohort_state"};
    for (size_t t = 0; ok && t < sizeof(tables) / sizeof(tables[0]); t++) {
        snprintf(sql, sizeof(sql), "DELETE FROM %s%s WHERE cohort_definition_id = $1::bigint", q,
                 tables[t]);
        r = PQexecParams(db, sql, 1, NULL, p, NULL, NULL, 0);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            fprintf(stderr, "cohortgate cohort retire: definition %s: %s", id,
                    PQresultErrorMessage(r));
        PQclear(r);
    }
    r = PQexec(db, ok ? "COMMIT" : "ROLLBACK");
    if (ok && PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "cohortgate cohort retire: definition %s: %s", id, PQresultErrorMessage(r));
        ok = 0;
    }
    PQclear(r);
    if (ok)
        printf("definition %s retired: %lld member(s) exited\n", id, exits);
    return ok ? 0 : -1;
}

static int retire(int argc, char **argv)
{
    admin_args_t a;
    int st = parse_args(argc, argv, 0, retire_usage, &a);
    if (st)
        return st < 0 ? CG_EXIT_OK : st;
    const char *conninfo = a.conninfo, *schema = a.schema;
    if (!conninfo || optind >= argc) {
        fprintf(stderr, "cohortgate cohort retire: %s\n",
                !conninfo ? "-c/--db CONNINFO is required" : "at least one definition ID");
        return CG_EXIT_USAGE;
    }
    for (int i = optind; i < argc; i++) {
        char *end;
        long long v = strtoll(argv[i], &end, 10);
        if (*end || end == argv[i] || v < 0) {
            fprintf(stderr, "cohortgate cohort retire: '%s' is not a cohort_definition_id\n",
                    argv[i]);
            return CG_EXIT_USAGE;
        }
    }
    PGconn *db = PQconnectdb(conninfo);
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "cohortgate cohort retire: cannot connect: %s", PQerrorMessage(db));
        PQfinish(db);
        return CG_EXIT_FAILURE;
    }
    PQclear(PQexec(db, "SET client_min_messages = warning"));
    int failed = 0;
    for (int i = optind; i < argc; i++)
        failed += retire_one(db, schema, argv[i]) != 0;
    PQfinish(db);
    return failed ? CG_EXIT_FAILURE : CG_EXIT_OK;
}

int cg_cli_cohort_admin(int argc, char **argv)
{
    return !strcmp(argv[0], "retire") ? retire(argc, argv) : withdraw(argc, argv);
}
