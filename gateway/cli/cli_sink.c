/* cli_sink.c - `cohortgate sink`: the record topics into PostgreSQL OMOP tables, exactly once.
 * The engine in pass-through mode (no mapping) from the Kafka source (read_committed) to the
 * pg sink, whose database transactions hold the source's offsets; `--init` makes the schema. */
#include "cg_cli.h"
#include "cg_config.h"
#include "cg_gateway.h"
#include "cg_pg.h"

#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cohortgate sink -c CONFIG [--init | --load-vocab DIR] [--idle-exit MS]\n\n"
            "Consume the record topics named in CONFIG's inputs (read_committed) and apply each\n"
            "record envelope to the OMOP CDM v5.4 tables of a PostgreSQL schema (output.sink\n"
            "\"pg\", settings pg.*): upserts replace the row with that id (written only when it\n"
            "changed), deletes retract it, person merges move the merged person's rows to the\n"
            "survivor. Exactly once: the offsets are stored in the same database transaction as\n"
            "the rows, and on start and on every assignment each partition resumes from the\n"
            "offset the database holds. A record the database refuses goes to the cg_rejects\n"
            "table with the reason and its topic, partition and offset; the batch goes on.\n\n"
            "options:\n"
            "  -c, --config FILE   sink config (JSON; see config/sink.json and config/README.md)\n"
            "      --init          create the schema (OMOP CDM v5.4 tables, keys, indexes, and\n"
            "                      the sink's cg_* tables) if missing, then exit; idempotent;\n"
            "                      refuses a schema of another CDM version or id type\n"
            "      --load-vocab DIR  load OHDSI Athena's vocabulary files from DIR (CONCEPT.csv,\n"
            "                      CONCEPT_RELATIONSHIP.csv, CONCEPT_ANCESTOR.csv, VOCABULARY.csv\n"
            "                      and the others present) into the schema with COPY, each\n"
            "                      replacing its table's rows, in one transaction, then exit;\n"
            "                      after --init; cohorts then resolve includeDescendants and\n"
            "                      includeMapped through them\n"
            "      --idle-exit MS  stop once every partition is consumed and nothing came for\n"
            "                      MS milliseconds (loads, tests); by default run until SIGTERM\n"
            "  -h, --help          show this help\n\n"
            "The connection string is pg.conninfo (never a password), or the environment\n"
            "variable pg.conninfo_env names (default COHORTGATE_PG_CONNINFO); the password from\n"
            "pg.password_file, PGPASSWORD or ~/.pgpass. None of them is logged.\n"
            "SIGTERM or SIGINT commits the open transaction within delivery.drain_timeout_ms.\n"
            "SIGHUP re-reads pg.cohorts.definitions (the running ones stay when one does not\n"
            "load): new and changed definitions are evaluated for every person, between\n"
            "transactions; a definition that left the folder is warned of (cohort retire).\n"
            "Metrics and health: http://metrics.listen/metrics and /healthz.\n");
}

int cg_cli_sink(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"init", no_argument, NULL, 'I'},
        {"load-vocab", required_argument, NULL, 'V'},
        {"idle-exit", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *vocab = NULL;
    int init = 0, idle_ms = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'I':
            init = 1;
            break;
        case 'V':
            vocab = optarg;
            break;
        case 'i':
            if (cg_cli_parse_ms("sink", "--idle-exit", optarg, &idle_ms))
                return CG_EXIT_USAGE;
            break;
        case 'h':
            usage(stdout);
            return CG_EXIT_OK;
        default:
            usage(stderr);
            return CG_EXIT_USAGE;
        }
    }
    if (init && vocab) {
        fprintf(stderr, "cohortgate sink: --init and --load-vocab are two steps: run --init "
                        "first\n\n");
        usage(stderr);
        return CG_EXIT_USAGE;
    }
    if (!config || optind != argc) {
        fprintf(stderr, "cohortgate sink: %s\n\n",
                config ? "unexpected argument" : "a config is required (-c FILE)");
        usage(stderr);
        return CG_EXIT_USAGE;
    }
    cg_config_t *cfg = cg_cli_daemon_config(config);
    if (!cfg)
        return CG_EXIT_FAILURE;
    char errstr[1024];
    if (!cfg->sink || strcmp(cfg->sink, "pg")) {
        cg_cli_daemon_fail("cohortgate sink", "%s: 'output.sink' must be \"pg\" (it is \"%s\")",
                           config, cfg->sink ? cfg->sink : "kafka");
        cg_config_destroy(cfg);
        return CG_EXIT_FAILURE;
    }
    if (cg_pg_config_check(cfg, errstr, sizeof(errstr))) {
        cg_cli_daemon_fail("cohortgate sink", "%s: %s", config, errstr);
        cg_config_destroy(cfg);
        return CG_EXIT_FAILURE;
    }
    if (init) {
        char summary[512];
        int rc = cg_pg_schema_init(cfg, summary, sizeof(summary), errstr, sizeof(errstr));
        if (rc)
            fprintf(stderr, "cohortgate sink --init: %s\n", errstr);
        else
            printf("%s\n", summary);
        cg_config_destroy(cfg);
        return rc ? CG_EXIT_FAILURE : CG_EXIT_OK;
    }
    if (vocab) {
        char summary[512];
        int rc =
            cg_pg_load_vocab(cfg, vocab, stderr, summary, sizeof(summary), errstr, sizeof(errstr));
        if (rc)
            fprintf(stderr, "cohortgate sink --load-vocab: %s\n", errstr);
        else
            printf("%s\n", summary);
        cg_config_destroy(cfg);
        return rc ? CG_EXIT_FAILURE : CG_EXIT_OK;
    }
    /* the offsets live in the database's transactions: always exactly-once */
    cfg->semantics = CG_DELIVERY_EXACTLY_ONCE;
    cg_gateway_opts_t gopts = {.passthrough = 1, .idle_exit_ms = idle_ms};
    cg_gateway_t *gw = cg_gateway_new(cfg, &gopts, errstr, sizeof(errstr));
    if (!gw) {
        cg_cli_daemon_fail("cohortgate sink", "%s", errstr);
        cg_config_destroy(cfg);
        return CG_EXIT_FAILURE;
    }
    cg_err_t rc = cg_cli_daemon_run(gw, "sink", 1);
    cg_gateway_destroy(gw);
    cg_config_destroy(cfg);
    return rc == CG_OK ? CG_EXIT_OK : CG_EXIT_FAILURE;
}
