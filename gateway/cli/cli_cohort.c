/* cli_cohort.c - `cohortgate cohort check|explain|run`: Circe cohort definitions (cg_circe.h).
 *
 * check loads and compiles each definition and reports its errors (FILE:LINE:COLUMN); explain
 * prints the SQL a definition compiles to; run evaluates definitions against a PostgreSQL OMOP
 * CDM v5.4 schema and replaces each definition's rows in the `cohort` table, one transaction per
 * definition.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cg_circe.h"
#include "cg_cli.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: cohortgate cohort check [--id N] DEF...\n"
        "       cohortgate cohort explain [--id N] [--schema S] [--results-schema R] DEF\n"
        "       cohortgate cohort explain -c CONNINFO --schema S --person P DEF\n"
        "       cohortgate cohort run -c CONNINFO --schema S [--results-schema R] [--id N] "
        "DEF...\n\n"
        "Cohort definitions are OHDSI Circe cohort expressions (the JSON ATLAS exports), within\n"
        "the subset of specs/cohorts/CIRCE.md; anything outside it is refused with\n"
        "FILE:LINE:COLUMN naming the element. A DEF is a bare expression, or a definition\n"
        "with its header: {\"cohortgate\": {\"id\", \"name\", \"version\", \"kind\": \"disease\"\n"
        "or \"precohort\" (with \"draws_from\" and \"sponsor\")}, \"expression\": {...}}.\n\n"
        "  check     load and compile each DEF; print what it holds, or every error\n"
        "  explain   print the PostgreSQL SQL that recomputes DEF: a DELETE of its rows in\n"
        "            `cohort`, then an INSERT of primary events -> qualified events ->\n"
        "            inclusion rules -> end dates -> eras; with --person, why that person\n"
        "            is in or out: the events each step keeps, and the step that loses them\n"
        "  run       evaluate each DEF against the OMOP schema and replace its rows in\n"
        "            `cohort` (one transaction per definition); print the rows written\n\n"
        "options:\n"
        "  -c, --db CONNINFO       libpq connection string (run, explain --person), e.g. "
        "'host=/tmp dbname=omop'\n"
        "  -s, --schema S          schema of the OMOP CDM tables (default: the search_path)\n"
        "  -r, --results-schema R  schema of the `cohort` table (default: --schema)\n"
        "  -i, --id N              cohort_definition_id; with several DEFs the first gets N,\n"
        "                          the next N+1, ...; or write DEF as N=FILE; by default the\n"
        "                          id in the definition's header, else 1, 2, ... in order\n"
        "  -p, --person P          explain: a person's pseudonym (person_source_value) or\n"
        "                          person_id\n"
        "  -h, --help              show this help\n\n"
        "exit status: 0 all good, 1 a definition was refused or failed, 2 bad command line\n");
}

/* "N=FILE" gives its own id. */
static const char *def_path(const char *arg, long long *id)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return arg;
    char *end;
    errno = 0;
    long long v = strtoll(arg, &end, 10);
    if (end != eq || errno)
        return arg;
    *id = v;
    return eq + 1;
}

static cg_circe_t *load(const char *path)
{
    cg_error_t errs[20];
    size_t n = 0;
    cg_circe_t *c = cg_circe_load(path, errs, 20, &n);
    if (!c)
        cg_cli_print_errors(stderr, errs, n < 20 ? n : 20, 20);
    return c;
}

static int run_one(PGconn *db, const cg_circe_t *c, const cg_circe_sql_options_t *o,
                   const char *path)
{
    cg_buf_t sql;
    cg_buf_init(&sql);
    if (cg_buf_puts(&sql, "BEGIN;\n") != CG_OK || cg_circe_compile(c, o, &sql) != CG_OK ||
        cg_buf_puts(&sql, "COMMIT;\n") != CG_OK) {
        fprintf(stderr, "%s: error: cannot compile\n", path);
        cg_buf_free(&sql);
        return -1;
    }
    PGresult *r = PQexec(db, sql.data);
    cg_buf_free(&sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "%s: error: PostgreSQL: %s", path, PQerrorMessage(db));
        PQclear(r);
        PQclear(PQexec(db, "ROLLBACK"));
        return -1;
    }
    PQclear(r);
    char q[512], id[32];
    const char *rs = o->results_schema ? o->results_schema : o->cdm_schema;
    char *ident = rs && *rs ? PQescapeIdentifier(db, rs, strlen(rs)) : NULL;
    snprintf(q, sizeof q,
             "SELECT count(*), count(DISTINCT subject_id) FROM %s%scohort WHERE "
             "cohort_definition_id = $1",
             ident ? ident : "", ident ? "." : "");
    PQfreemem(ident);
    snprintf(id, sizeof id, "%lld", o->cohort_id);
    const char *params[1] = {id};
    r = PQexecParams(db, q, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "%s: error: PostgreSQL: %s", path, PQerrorMessage(db));
        PQclear(r);
        return -1;
    }
    printf("%s: cohort_definition_id %lld: %s rows, %s persons\n", path, o->cohort_id,
           PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
    PQclear(r);
    return 0;
}

/* Why o->person is in or out: how many events each step keeps, the first empty step named. */
static int diagnose(PGconn *db, const cg_circe_t *c, const cg_circe_sql_options_t *o,
                    const char *path)
{
    cg_buf_t sql;
    cg_buf_init(&sql);
    if (cg_circe_compile(c, o, &sql) != CG_OK) {
        fprintf(stderr, "%s: error: cannot compile\n", path);
        cg_buf_free(&sql);
        return -1;
    }
    PGresult *r = PQexec(db, sql.data);
    cg_buf_free(&sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "%s: error: PostgreSQL: %s", path, PQerrorMessage(db));
        PQclear(r);
        return -1;
    }
    int n = PQntuples(r), out_at = -1;
    printf("%s: person %s\n", path, o->person);
    for (int i = 0; i < n; i++) {
        const char *count = PQgetvalue(r, i, 2), *dates = PQgetvalue(r, i, 3);
        int zero = !strcmp(count, "0");
        printf("  %-75s %6s%s%s%s\n", PQgetvalue(r, i, 1), count, *dates ? "  (" : "", dates,
               *dates ? ")" : "");
        if (zero && out_at < 0)
            out_at = i;
    }
    if (out_at < 0)
        printf("  IN: the person is a member\n");
    else
        printf("  OUT: no event is left after: %s\n", PQgetvalue(r, out_at, 1));
    PQclear(r);
    return 0;
}

int cg_cli_cohort(int argc, char **argv)
{
    static const struct option longopts[] = {{"db", required_argument, NULL, 'c'},
                                             {"schema", required_argument, NULL, 's'},
                                             {"results-schema", required_argument, NULL, 'r'},
                                             {"id", required_argument, NULL, 'i'},
                                             {"person", required_argument, NULL, 'p'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CG_EXIT_USAGE : CG_EXIT_OK;
    }
    const char *action = argv[1];
    int act = !strcmp(action, "check")     ? 0
              : !strcmp(action, "explain") ? 1
              : !strcmp(action, "run")     ? 2
                                           : -1;
    if (act < 0) {
        fprintf(stderr, "cohortgate cohort: unknown action '%s' (check, explain or run)\n", action);
        return CG_EXIT_USAGE;
    }
    const char *conninfo = NULL, *schema = NULL, *results = NULL, *person = NULL;
    long long first_id = 1;
    int id_given = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc - 1, argv + 1, "c:s:r:i:p:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            conninfo = optarg;
            break;
        case 's':
            schema = optarg;
            break;
        case 'r':
            results = optarg;
            break;
        case 'p':
            person = optarg;
            break;
        case 'i': {
            char *end;
            errno = 0;
            first_id = strtoll(optarg, &end, 10);
            id_given = 1;
            if (*end || errno || end == optarg) {
                fprintf(stderr, "cohortgate cohort: --id wants an integer, not '%s'\n", optarg);
                return CG_EXIT_USAGE;
            }
            break;
        }
        case 'h':
            usage(stdout);
            return CG_EXIT_OK;
        default:
            usage(stderr);
            return CG_EXIT_USAGE;
        }
    }
    int first = optind + 1;
    if (first >= argc) {
        fprintf(stderr, "cohortgate cohort %s: no definition given\n", action);
        return CG_EXIT_USAGE;
    }
    if (act == 1 && argc - first != 1) {
        fprintf(stderr, "cohortgate cohort explain: one definition at a time\n");
        return CG_EXIT_USAGE;
    }
    if (act == 2 && !conninfo) {
        fprintf(stderr, "cohortgate cohort run: -c/--db CONNINFO is required\n");
        return CG_EXIT_USAGE;
    }
    if (person && (act != 1 || !conninfo)) {
        fprintf(stderr, "cohortgate cohort: --person goes with explain and -c/--db CONNINFO\n");
        return CG_EXIT_USAGE;
    }
    PGconn *db = NULL;
    if (act == 2 || person) {
        db = PQconnectdb(conninfo);
        if (PQstatus(db) != CONNECTION_OK) {
            fprintf(stderr, "cohortgate cohort run: cannot connect: %s", PQerrorMessage(db));
            PQfinish(db);
            return CG_EXIT_FAILURE;
        }
        PQclear(PQexec(db, "SET client_min_messages = warning"));
    }
    int failed = 0;
    for (int i = first; i < argc; i++) {
        long long id = 0;
        const char *path = def_path(argv[i], &id);
        cg_circe_t *c = load(path);
        if (!c) {
            failed++;
            continue;
        }
        const cg_circe_header_t *h = cg_circe_header(c);
        if (!id) /* N=FILE, else --id, else the header's id, else 1, 2, ... in order */
            id = id_given || !h->present ? first_id + (i - first) : h->id;
        cg_circe_sql_options_t o = {schema, results, id, person};
        if (act == 0) {
            cg_circe_summary_t s;
            cg_circe_summarize(c, &s);
            cg_buf_t sql;
            cg_buf_init(&sql);
            cg_err_t e = cg_circe_compile(c, &o, &sql);
            if (e != CG_OK) {
                fprintf(stderr, "%s: error: %s\n", path, cg_err2str(e));
                failed++;
            } else {
                if (h->present)
                    printf("%s: %s version %lld (%s%s%s%s%s), cohort_definition_id "
                           "%lld\n",
                           path, h->name, h->version, h->kind,
                           h->draws_from[0] ? " drawn from " : "", h->draws_from,
                           h->sponsor[0] ? " for " : "", h->sponsor, id);
                printf("%s: ok: %zu concept sets, %zu primary criteria, %s, %zu inclusion rules, "
                       "%zu censoring criteria; %zu bytes of SQL\n",
                       path, s.concept_sets, s.primary_criteria,
                       s.additional_criteria ? "additional criteria" : "no additional criteria",
                       s.inclusion_rules, s.censoring_criteria, sql.len);
            }
            cg_buf_free(&sql);
        } else if (act == 1 && person) {
            if (diagnose(db, c, &o, path) != 0)
                failed++;
        } else if (act == 1) {
            cg_buf_t sql;
            cg_buf_init(&sql);
            if (cg_circe_compile(c, &o, &sql) != CG_OK) {
                fprintf(stderr, "%s: error: cannot compile\n", path);
                failed++;
            } else
                fwrite(sql.data, 1, sql.len, stdout);
            cg_buf_free(&sql);
        } else if (run_one(db, c, &o, path) != 0) {
            failed++;
        }
        cg_circe_destroy(c);
    }
    PQfinish(db);
    return failed ? CG_EXIT_FAILURE : CG_EXIT_OK;
}
