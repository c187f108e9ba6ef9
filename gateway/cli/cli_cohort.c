/* cli_cohort.c - `cohortgate cohort check|explain|run`: Circe cohort definitions (cg_circe.h).
 *
 * check loads and compiles each definition and reports its errors (FILE:LINE:COLUMN); explain
 * prints the SQL a definition compiles to; run evaluates definitions against a PostgreSQL OMOP
 * CDM v5.4 schema and replaces each definition's rows in the `cohort` table and its row in
 * `cohort_definition`, one transaction per definition; count prints members per definition, a
 * count below k only as "<k" (cg_circe_count_format).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "cg_circe.h"
#include "cg_cli.h"
#include "cg_config.h"
#include "cg_release.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: cohortgate cohort check [--id N] DEF...\n"
        "       cohortgate cohort explain [--id N] [--schema S] [--results-schema R]\n"
        "                                 [--incremental] DEF\n"
        "       cohortgate cohort explain -c CONNINFO --schema S --person P DEF\n"
        "       cohortgate cohort run -c CONNINFO --schema S [--results-schema R] [--id N] "
        "DEF...\n"
        "       cohortgate cohort count -c CONNINFO [--schema S] [--results-schema R] [--k N] "
        "[--json]\n"
        "                               DEF...|ID...|--all\n"
        "       cohortgate cohort withdraw -c CONNINFO [--schema S] [--dry-run] FILE|-\n"
        "       cohortgate cohort retire -c CONNINFO [--schema S] ID...\n\n"
        "Cohort definitions are OHDSI Circe cohort expressions (the JSON ATLAS exports), within\n"
        "the subset of specs/cohorts/CIRCE.md; anything outside it is refused with\n"
        "FILE:LINE:COLUMN naming the element. A DEF is a bare expression, or a definition\n"
        "with its header: {\"cohortgate\": {\"id\", \"name\", \"version\", \"kind\": \"disease\"\n"
        "or \"precohort\" (with \"draws_from\" and \"sponsor\")}, \"expression\": {...}}.\n\n"
        "  check     load and compile each DEF; print what it holds, or every error\n"
        "  explain   print the PostgreSQL SQL that recomputes DEF: a DELETE of its rows in\n"
        "            `cohort`, then an INSERT of primary events -> qualified events ->\n"
        "            inclusion rules -> end dates -> eras; with --person, why that person\n"
        "            is in or out: the events each step keeps, and the step that loses them;\n"
        "            with --incremental, the SQL `cohortgate sink` runs in each batch: only\n"
        "            the persons of pg_temp.cg_changed_persons, into pg_temp.cg_cohort_new\n"
        "  run       evaluate each DEF against the OMOP schema and replace its rows in\n"
        "            `cohort`, and its row in `cohort_definition` (name, description, the\n"
        "            Circe JSON), in one transaction per definition; print the rows written\n"
        "  count     members (distinct persons in `cohort`) of each DEF, of each\n"
        "            cohort_definition_id given as a number, or of every definition (--all),\n"
        "            with small cells suppressed: a count below k is shown only as \"<k\"\n"
        "            (\"<10\" by default, 0 included), as everywhere counts leave cohortgate\n"
        "  withdraw  a withdrawal list (pseudonyms, one a line) into the sink schema's\n"
        "            cg_withdrawn: each person leaves every cohort (see withdraw --help)\n"
        "  retire    take definitions out of a sink schema: their members exit, their\n"
        "            rows go (see retire --help)\n\n"
        "options:\n"
        "  -c, --db CONNINFO       libpq connection string (run, count, explain --person),\n"
        "                          e.g. 'host=/tmp dbname=omop'\n"
        "  -s, --schema S          schema of the OMOP CDM tables (default: the search_path)\n"
        "  -r, --results-schema R  schema of the `cohort` and `cohort_definition` tables\n"
        "                          (default: --schema)\n"
        "  -i, --id N              cohort_definition_id; with several DEFs the first gets N,\n"
        "                          the next N+1, ...; or write DEF as N=FILE; by default the\n"
        "                          id in the definition's header, else 1, 2, ... in order\n"
        "  -p, --person P          explain: a person's pseudonym (person_source_value) or\n"
        "                          person_id\n"
        "      --k N               count: the smallest count shown (default 10, from 1)\n"
        "      --json              count: one JSON object, {\"k\": 10, \"cohorts\":\n"
        "                          [{\"cohort_definition_id\", \"name\", \"members\" (a number,\n"
        "                          or \"<10\" when suppressed), \"suppressed\"}]}\n"
        "      --all               count: every definition in `cohort` or `cohort_definition`\n"
        "      --for NAME          count: for subscriber NAME of --config's release.subscribers:\n"
        "                          its small_cell is k (a lower --k is refused), and nothing\n"
        "                          once its agreement has expired\n"
        "      --config FILE       count --for: the config declaring the subscriber\n"
        "  -h, --help              show this help\n\n"
        "examples:\n"
        "  cohortgate cohort run -c 'dbname=omop' --schema cdm specs/cohorts/circe/*.json\n"
        "  cohortgate cohort count -c 'dbname=omop' --schema cdm --all\n"
        "  cohortgate cohort count -c 'dbname=omop' --schema cdm --k 5 --json 1 2\n"
        "  cohortgate cohort count -c 'dbname=omop' --all --for sponsor-a --config gw.json\n\n"
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

static int pg_ok(PGconn *db, PGresult *r, const char *path)
{
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        PQclear(r);
        return 1;
    }
    fprintf(stderr, "%s: error: PostgreSQL: %s", path, PQerrorMessage(db));
    PQclear(r);
    return 0;
}

/* "schema." quoted for db, or "" (the search_path); free with PQfreemem unless "" */
static char *qualifier(PGconn *db, const cg_circe_sql_options_t *o, char *buf, size_t size)
{
    const char *rs = o->results_schema ? o->results_schema : o->cdm_schema;
    char *ident = rs && *rs ? PQescapeIdentifier(db, rs, strlen(rs)) : NULL;
    snprintf(buf, size, "%s%s", ident ? ident : "", ident ? "." : "");
    PQfreemem(ident);
    return buf;
}

/* The name a definition is known by: its header's, else its file's base name. */
static const char *def_name(const cg_circe_t *c, const char *path)
{
    const cg_circe_header_t *h = cg_circe_header(c);
    if (h->present && h->name[0])
        return h->name;
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Replaces the definition's row in `cohort_definition` (OMOP CDM v5.4): its name, description,
 * Circe JSON as cohort_definition_syntax, today as cohort_initiation_date; concept ids 0. In the
 * caller's transaction, so a second run updates the row instead of adding one. */
static int write_definition(PGconn *db, const cg_circe_t *c, const char *res, const char *id,
                            const char *path)
{
    char *syntax = cg_circe_expression_json(c);
    if (!syntax) {
        fprintf(stderr, "%s: error: out of memory\n", path);
        return 0;
    }
    char name[256];
    snprintf(name, sizeof name, "%s", def_name(c, path));
    char q[1024];
    snprintf(q, sizeof q, "DELETE FROM %scohort_definition WHERE cohort_definition_id = $1", res);
    const char *p1[1] = {id};
    int ok = pg_ok(db, PQexecParams(db, q, 1, NULL, p1, NULL, NULL, 0), path);
    snprintf(q, sizeof q,
             "INSERT INTO %scohort_definition (cohort_definition_id, cohort_definition_name, "
             "cohort_definition_description, definition_type_concept_id, "
             "cohort_definition_syntax, subject_concept_id, cohort_initiation_date) "
             "VALUES ($1, $2, $3, 0, $4, 0, CURRENT_DATE)",
             res);
    const char *p4[4] = {id, name, cg_circe_description(c), syntax};
    ok = ok && pg_ok(db, PQexecParams(db, q, 4, NULL, p4, NULL, NULL, 0), path);
    free(syntax);
    return ok;
}

static int run_one(PGconn *db, const cg_circe_t *c, const cg_circe_sql_options_t *o,
                   const char *path)
{
    cg_buf_t sql;
    cg_buf_init(&sql);
    if (cg_circe_compile(c, o, &sql) != CG_OK) {
        fprintf(stderr, "%s: error: cannot compile\n", path);
        cg_buf_free(&sql);
        return -1;
    }
    char res[160], id[32];
    qualifier(db, o, res, sizeof res);
    snprintf(id, sizeof id, "%lld", o->cohort_id);
    /* the definition's row and its cohort rows in one transaction */
    /* without nested loops: Circe's CTEs are estimated at a row or two, and with them
     * PostgreSQL joins the steps to themselves quadratically (minutes over 1M rows, seconds
     * without; gateway/plugins/pg/pg_cohort.c) */
    int ok = pg_ok(db, PQexec(db, "BEGIN"), path) &&
             pg_ok(db, PQexec(db, "SET LOCAL enable_nestloop = off"), path) &&
             write_definition(db, c, res, id, path) && pg_ok(db, PQexec(db, sql.data), path) &&
             pg_ok(db, PQexec(db, "COMMIT"), path);
    cg_buf_free(&sql);
    if (!ok) {
        PQclear(PQexec(db, "ROLLBACK"));
        return -1;
    }
    char q[512];
    snprintf(q, sizeof q,
             "SELECT count(*), count(DISTINCT subject_id) FROM %scohort WHERE "
             "cohort_definition_id = $1",
             res);
    const char *params[1] = {id};
    PGresult *r = PQexecParams(db, q, 1, NULL, params, NULL, NULL, 0);
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

/* ---- count: members per definition, small cells suppressed ---- */

typedef struct count_entry {
    long long id;
    char name[256];
} count_entry_t;

static int all_digits(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

static int add_entry(count_entry_t **v, size_t *n, long long id, const char *name)
{
    count_entry_t *nv = realloc(*v, (*n + 1) * sizeof **v);
    if (!nv)
        return 0;
    *v = nv;
    nv[*n].id = id;
    snprintf(nv[*n].name, sizeof nv[*n].name, "%s", name ? name : "");
    (*n)++;
    return 1;
}

/* 1 when res + name is a table, 0 when not, -1 on a database error (printed) */
static int has_table(PGconn *db, const char *res, const char *name)
{
    char tbl[256];
    snprintf(tbl, sizeof tbl, "%s%s", res, name);
    const char *p1[1] = {tbl};
    PGresult *r =
        PQexecParams(db, "SELECT to_regclass($1) IS NOT NULL", 1, NULL, p1, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "cohortgate cohort count: error: PostgreSQL: %s", PQerrorMessage(db));
        PQclear(r);
        return -1;
    }
    int yes = !strcmp(PQgetvalue(r, 0, 0), "t");
    PQclear(r);
    if (!yes && !strcmp(name, "cohort"))
        fprintf(stderr,
                "cohortgate cohort count: error: there is no table %scohort (give the schema "
                "of the OMOP `cohort` table with --results-schema or --schema)\n",
                res);
    return yes;
}

/* Members (distinct subject_id in `cohort`) of each entry, printed with counts below k shown
 * only as "<k" (cg_circe_count_format). */
static int count_print(PGconn *db, const char *res, count_entry_t *v, size_t n, long long k,
                       int as_json)
{
    char q[1024];
    PGresult *r;
    int has_defs = has_table(db, res, "cohort_definition");
    if (has_defs < 0 || has_table(db, res, "cohort") != 1)
        return -1;
    if (has_defs)
        snprintf(q, sizeof q,
                 "SELECT (SELECT count(DISTINCT subject_id) FROM %scohort WHERE "
                 "cohort_definition_id = $1), (SELECT min(cohort_definition_name) FROM "
                 "%scohort_definition WHERE cohort_definition_id = $1)",
                 res, res);
    else
        snprintf(q, sizeof q,
                 "SELECT count(DISTINCT subject_id), NULL FROM %scohort WHERE "
                 "cohort_definition_id = $1",
                 res);
    json_t *list = json_array();
    int failed = 0;
    if (!as_json)
        printf("%-20s  %-32s  %10s\n", "cohort_definition_id", "name", "members");
    for (size_t i = 0; i < n; i++) {
        char id[32], shown[32];
        snprintf(id, sizeof id, "%lld", v[i].id);
        const char *p[1] = {id};
        r = PQexecParams(db, q, 1, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            fprintf(stderr, "cohortgate cohort count: error: PostgreSQL: %s", PQerrorMessage(db));
            PQclear(r);
            failed = 1;
            break;
        }
        long long members = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        if (!v[i].name[0] && !PQgetisnull(r, 0, 1))
            snprintf(v[i].name, sizeof v[i].name, "%s", PQgetvalue(r, 0, 1));
        PQclear(r);
        cg_circe_count_format(members, k, shown, sizeof shown);
        int hidden = cg_circe_count_suppressed(members, k);
        if (as_json)
            json_array_append_new(list,
                                  json_pack("{s:I, s:s, s:o, s:b}", "cohort_definition_id",
                                            (json_int_t)v[i].id, "name", v[i].name, "members",
                                            hidden ? json_string(shown) : json_integer(members),
                                            "suppressed", hidden));
        else
            printf("%-20lld  %-32s  %10s\n", v[i].id, v[i].name, shown);
    }
    if (!failed && as_json) {
        json_t *doc = json_pack("{s:I, s:o}", "k", (json_int_t)k, "cohorts", json_incref(list));
        char *text = json_dumps(doc, JSON_COMPACT);
        if (text)
            puts(text);
        free(text);
        json_decref(doc);
    } else if (!failed)
        printf("(distinct persons; a count below %lld is shown as \"<%lld\")\n", k, k);
    json_decref(list);
    return failed ? -1 : 0;
}

/* Every cohort_definition_id in `cohort` or `cohort_definition`, in order. */
static int count_all(PGconn *db, const char *res, count_entry_t **v, size_t *n)
{
    char q[1024];
    int has_defs = has_table(db, res, "cohort_definition");
    if (has_defs < 0 || has_table(db, res, "cohort") != 1)
        return -1;
    int len = snprintf(q, sizeof q, "SELECT cohort_definition_id FROM %scohort", res);
    if (has_defs)
        snprintf(q + len, sizeof q - (size_t)len,
                 " UNION SELECT cohort_definition_id FROM %scohort_definition", res);
    strncat(q, " ORDER BY 1", sizeof q - strlen(q) - 1);
    PGresult *r = PQexec(db, q);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "cohortgate cohort count: error: PostgreSQL: %s", PQerrorMessage(db));
        PQclear(r);
        return -1;
    }
    int ok = 1;
    for (int i = 0; i < PQntuples(r) && ok; i++)
        ok = add_entry(v, n, strtoll(PQgetvalue(r, i, 0), NULL, 10), NULL);
    PQclear(r);
    return ok ? 0 : -1;
}

/* count --for NAME --config FILE: the subscriber's small-cell rule (its small_cell; a --k below
 * it is refused), and nothing for a subscriber whose agreement has expired. */
static int subscriber_k(const char *config, const char *name, int k_given, long long *k)
{
    cg_config_t *cfg = cg_cli_load_config(config);
    if (!cfg)
        return CG_EXIT_FAILURE;
    const cg_config_subscriber_t *sub = NULL;
    for (size_t i = 0; i < cfg->n_subscribers && !sub; i++)
        if (!strcmp(cfg->subscribers[i].name, name))
            sub = &cfg->subscribers[i];
    int rc = CG_EXIT_OK;
    if (!sub) {
        fprintf(stderr, "cohortgate cohort count: %s declares no subscriber '%s'\n", config, name);
        rc = CG_EXIT_USAGE;
    } else if (cg_release_day_end(sub->expires) == (time_t)-1) {
        fprintf(stderr,
                "cohortgate cohort count: subscriber '%s': expires '%s' is not YYYY-MM-DD\n", name,
                sub->expires);
        rc = CG_EXIT_FAILURE;
    } else if (time(NULL) >= cg_release_day_end(sub->expires)) {
        fprintf(stderr,
                "cohortgate cohort count: subscriber '%s': agreement %s expired on %s: no counts "
                "leave for it\n",
                name, sub->agreement, sub->expires);
        rc = CG_EXIT_FAILURE;
    } else if (k_given && *k < sub->small_cell) {
        fprintf(stderr,
                "cohortgate cohort count: --k %lld is below subscriber '%s''s small_cell %d\n", *k,
                name, sub->small_cell);
        rc = CG_EXIT_USAGE;
    } else if (!k_given) {
        *k = sub->small_cell;
    }
    cg_config_destroy(cfg);
    return rc;
}

int cg_cli_cohort(int argc, char **argv)
{
    static const struct option longopts[] = {{"db", required_argument, NULL, 'c'},
                                             {"schema", required_argument, NULL, 's'},
                                             {"results-schema", required_argument, NULL, 'r'},
                                             {"id", required_argument, NULL, 'i'},
                                             {"person", required_argument, NULL, 'p'},
                                             {"k", required_argument, NULL, 'k'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"all", no_argument, NULL, 'a'},
                                             {"incremental", no_argument, NULL, 'n'},
                                             {"for", required_argument, NULL, 'f'},
                                             {"config", required_argument, NULL, 'C'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CG_EXIT_USAGE : CG_EXIT_OK;
    }
    const char *action = argv[1];
    if (!strcmp(action, "withdraw") || !strcmp(action, "retire"))
        return cg_cli_cohort_admin(argc - 1, argv + 1);
    int act = !strcmp(action, "check")     ? 0
              : !strcmp(action, "explain") ? 1
              : !strcmp(action, "run")     ? 2
              : !strcmp(action, "count")   ? 3
                                           : -1;
    if (act < 0) {
        fprintf(stderr,
                "cohortgate cohort: unknown action '%s' (check, explain, run, count, withdraw or "
                "retire)\n",
                action);
        return CG_EXIT_USAGE;
    }
    const char *conninfo = NULL, *schema = NULL, *results = NULL, *person = NULL;
    const char *for_sub = NULL, *config = NULL;
    long long first_id = 1, k = CG_CIRCE_SUPPRESS_K;
    int id_given = 0, as_json = 0, all = 0, k_given = 0, incremental = 0;
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
        case 'j':
            as_json = 1;
            break;
        case 'a':
            all = 1;
            break;
        case 'n':
            incremental = 1;
            break;
        case 'f':
            for_sub = optarg;
            break;
        case 'C':
            config = optarg;
            break;
        case 'i':
        case 'k': {
            char *end;
            errno = 0;
            long long v = strtoll(optarg, &end, 10);
            if (*end || errno || end == optarg || (ch == 'k' && (v < 1 || v > 1000000))) {
                fprintf(stderr, "cohortgate cohort: %s wants %s, not '%s'\n",
                        ch == 'k' ? "--k" : "--id",
                        ch == 'k' ? "an integer from 1 to 1000000" : "an integer", optarg);
                return CG_EXIT_USAGE;
            }
            if (ch == 'k') {
                k = v;
                k_given = 1;
            } else {
                first_id = v;
                id_given = 1;
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
    if (act != 3 && (k_given || as_json || all)) {
        fprintf(stderr, "cohortgate cohort %s: --k, --json and --all go with count\n", action);
        return CG_EXIT_USAGE;
    }
    if (incremental && (act != 1 || person)) {
        fprintf(stderr,
                "cohortgate cohort %s: --incremental goes with explain (without "
                "--person)\n",
                action);
        return CG_EXIT_USAGE;
    }
    if ((for_sub || config) && (act != 3 || !for_sub || !config)) {
        fprintf(stderr,
                "cohortgate cohort %s: --for NAME and --config FILE go together, with "
                "count\n",
                action);
        return CG_EXIT_USAGE;
    }
    if (for_sub) {
        int rc = subscriber_k(config, for_sub, k_given, &k);
        if (rc != CG_EXIT_OK)
            return rc;
    }
    if (act == 3 && all && first < argc) {
        fprintf(stderr, "cohortgate cohort count: either definitions or --all, not both\n");
        return CG_EXIT_USAGE;
    }
    if (first >= argc && !(act == 3 && all)) {
        fprintf(stderr, "cohortgate cohort %s: no definition given%s\n", action,
                act == 3 ? " (DEF... or --all)" : "");
        return CG_EXIT_USAGE;
    }
    if (act == 1 && argc - first != 1) {
        fprintf(stderr, "cohortgate cohort explain: one definition at a time\n");
        return CG_EXIT_USAGE;
    }
    if ((act == 2 || act == 3) && !conninfo) {
        fprintf(stderr, "cohortgate cohort %s: -c/--db CONNINFO is required\n", action);
        return CG_EXIT_USAGE;
    }
    if (person && (act != 1 || !conninfo)) {
        fprintf(stderr, "cohortgate cohort: --person goes with explain and -c/--db CONNINFO\n");
        return CG_EXIT_USAGE;
    }
    PGconn *db = NULL;
    if (act >= 2 || person) {
        db = PQconnectdb(conninfo);
        if (PQstatus(db) != CONNECTION_OK) {
            fprintf(stderr, "cohortgate cohort %s: cannot connect: %s", action, PQerrorMessage(db));
            PQfinish(db);
            return CG_EXIT_FAILURE;
        }
        PQclear(PQexec(db, "SET client_min_messages = warning"));
    }
    int failed = 0;
    count_entry_t *entries = NULL;
    size_t n_entries = 0;
    char res[160] = "";
    if (act == 3) {
        cg_circe_sql_options_t o = {schema, results, 0, NULL, NULL, NULL};
        qualifier(db, &o, res, sizeof res);
        if (all && count_all(db, res, &entries, &n_entries) != 0)
            failed++;
    }
    for (int i = first; i < argc; i++) {
        long long id = 0;
        if (act == 3 && all_digits(argv[i]) && access(argv[i], F_OK) != 0) {
            /* count by cohort_definition_id */
            if (!add_entry(&entries, &n_entries, strtoll(argv[i], NULL, 10), NULL))
                failed++;
            continue;
        }
        const char *path = def_path(argv[i], &id);
        cg_circe_t *c = load(path);
        if (!c) {
            failed++;
            continue;
        }
        const cg_circe_header_t *h = cg_circe_header(c);
        if (!id) /* N=FILE, else --id, else the header's id, else 1, 2, ... in order */
            id = id_given || !h->present ? first_id + (i - first) : h->id;
        cg_circe_sql_options_t o = {schema, results, id, person, NULL, NULL};
        if (incremental) { /* what `cohortgate sink` runs in each batch (pg_cohort.c) */
            o.into = "pg_temp.cg_cohort_new";
            o.only_persons = "pg_temp.cg_changed_persons";
        }
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
        } else if (act == 3) {
            if (!add_entry(&entries, &n_entries, id, h->present ? h->name : NULL))
                failed++;
        } else if (run_one(db, c, &o, path) != 0) {
            failed++;
        }
        cg_circe_destroy(c);
    }
    /* a refused definition counts nothing: no partial table */
    if (act == 3 && !failed && count_print(db, res, entries, n_entries, k, as_json) != 0)
        failed++;
    free(entries);
    PQfinish(db);
    return failed ? CG_EXIT_FAILURE : CG_EXIT_OK;
}
