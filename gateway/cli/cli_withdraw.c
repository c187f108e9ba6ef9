/* cli_withdraw.c - `cohortgate cohort withdraw`: a withdrawal list (pseudonyms, one a line) into
 * a sink schema's cg_withdrawn, where `cohortgate sink` honours it: the person leaves every
 * cohort and every disease schema, with exit events, and later records do not bring them back. */
#include "cg_cli.h"

#include <getopt.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
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

int cg_cli_cohort_withdraw(int argc, char **argv)
{
    static const struct option longopts[] = {{"db", required_argument, NULL, 'c'},
                                             {"schema", required_argument, NULL, 's'},
                                             {"dry-run", no_argument, NULL, 'n'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *conninfo = NULL, *schema = NULL;
    int dry = 0, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:s:nh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            conninfo = optarg;
            break;
        case 's':
            schema = optarg;
            break;
        case 'n':
            dry = 1;
            break;
        case 'h':
            usage(stdout);
            return CG_EXIT_OK;
        default:
            usage(stderr);
            return CG_EXIT_USAGE;
        }
    }
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
