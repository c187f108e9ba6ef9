/* cg-omop-load - load NDJSON OMOP CDM v5.4 record envelopes into a fresh PostgreSQL schema and
 * report every row PostgreSQL refuses (file:line, table, column, SQLSTATE and message).
 *
 *   cg-omop-load [--conninfo STR] [--schema NAME] [--keep] [--strict] [--upsert] [-q] [FILE...]
 *   cg-omop-load --ddl [--schema NAME]
 *
 * Exit status: 0 when every OMOP row inserted, 1 when any failed, 2 on usage or connection
 * errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_omop.h"
#include "omop_load.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: cg-omop-load [options] [FILE...]   (no FILE or \"-\": standard input)\n"
        "  --conninfo STR  libpq connection string (default: $COHORTGATE_TEST_PG)\n"
        "  --schema NAME   create the tables in NAME (made if missing, must not hold them yet)\n"
        "                  instead of in a new uniquely named schema\n"
        "  --keep          keep the schema afterwards (default: drop it)\n"
        "  --strict        also refuse rows that cohortgate's own OMOP checker refuses\n"
        "  --upsert        a row with a primary key loaded already replaces it, as a sink\n"
        "                  does (default: a repeated primary key is a failure)\n"
        "  --ddl           print the CREATE TABLE statements and exit (no server needed)\n"
        "  -q, --quiet     no per-table summary\n");
}

int main(int argc, char **argv)
{
    cg_omop_load_options_t opt = {.report = stderr};
    bool ddl = false, quiet = false;
    int first_file = argc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "--conninfo") == 0 || strcmp(a, "--schema") == 0) && i + 1 >= argc) {
            fprintf(stderr, "cg-omop-load: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--conninfo") == 0) {
            opt.conninfo = argv[++i];
        } else if (strcmp(a, "--schema") == 0) {
            opt.schema = argv[++i];
        } else if (strcmp(a, "--keep") == 0) {
            opt.keep = true;
        } else if (strcmp(a, "--strict") == 0) {
            opt.strict = true;
        } else if (strcmp(a, "--upsert") == 0) {
            opt.upsert = true;
        } else if (strcmp(a, "--ddl") == 0) {
            ddl = true;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            quiet = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--") == 0) {
            first_file = i + 1;
            break;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "cg-omop-load: unknown option %s\n", a);
            usage(stderr);
            return 2;
        } else {
            first_file = i;
            break;
        }
    }
    if (ddl)
        return cg_omop_write_ddl(stdout, opt.schema) == 0 ? 0 : 2;

    char err[1024];
    cg_omop_loader_t *l = cg_omop_loader_new(&opt, err, sizeof err);
    if (!l) {
        fprintf(stderr, "cg-omop-load: %s\n", err);
        return 2;
    }
    if (first_file >= argc)
        cg_omop_loader_load_file(l, "-");
    for (int i = first_file; i < argc; i++)
        cg_omop_loader_load_file(l, argv[i]);
    if (!quiet)
        cg_omop_loader_print_summary(l, stdout);
    if (opt.keep && !quiet)
        printf("schema %s kept\n", cg_omop_loader_schema(l));
    int rc = cg_omop_loader_n_failures(l) > 0 ? 1 : 0;
    cg_omop_loader_destroy(l);
    return rc;
}
