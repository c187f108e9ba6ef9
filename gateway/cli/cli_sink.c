/* cli_sink.c - `cohortgate sink`: the record topics into PostgreSQL OMOP tables, exactly once.
 * The engine in pass-through mode (no mapping) from the Kafka source (read_committed) to the
 * pg sink, whose database transactions hold the source's offsets; `--init` makes the schema. */
#include "cg_cli.h"
#include "cg_config.h"
#include "cg_gateway.h"
#include "cg_kafka.h"
#include "cg_pg.h"

#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cohortgate sink -c CONFIG [-c CONFIG ...] [--init | --load-vocab DIR]\n"
            "                       [--idle-exit MS]\n\n"
            "Consume the record topics named in CONFIG's inputs (read_committed) and apply each\n"
            "record envelope to the OMOP CDM v5.4 tables of a PostgreSQL schema (output.sink\n"
            "\"pg\", settings pg.*): upserts replace the row with that id (written only when it\n"
            "changed), deletes retract it, person merges move the merged person's rows to the\n"
            "survivor. Exactly once: the offsets are stored in the same database transaction as\n"
            "the rows, and on start and on every assignment each partition resumes from the\n"
            "offset the database holds. A record the database refuses goes to the cg_rejects\n"
            "table with the reason and its topic, partition and offset; the batch goes on.\n\n"
            "options:\n"
            "  -c, --config FILE   sink config (JSON; see config/sink.json and config/README.md);\n"
            "                      several: one database (or schema) each, with its own\n"
            "                      subscription, group_id and metrics.listen, each in a process\n"
            "                      of its own (log lines say \"instance\": FILE); signals reach\n"
            "                      all, and when one fails the others are stopped (exit 1)\n"
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
            "SIGHUP reads CONFIG again and takes log.level, pg.batch_rows, cdm_source's names\n"
            "and the pg.cohorts settings that can change live (config/README.md, \"SIGHUP\");\n"
            "it re-reads pg.cohorts.definitions: new and changed definitions are evaluated for\n"
            "every person, between transactions; a definition that left the folder is warned\n"
            "of (cohort retire). A bad file or a setting that needs a restart is refused and\n"
            "everything runs on as it was.\n"
            "Metrics and health: http://metrics.listen/metrics and /healthz.\n");
}

/* A sink config loaded and checked (output.sink "pg", pg.*); NULL after saying why. */
static cg_config_t *load_sink_config(const char *path)
{
    cg_config_t *cfg = cg_cli_daemon_config(path);
    if (!cfg)
        return NULL;
    char errstr[1024];
    if (!cfg->sink || strcmp(cfg->sink, "pg")) {
        cg_cli_daemon_fail("cohortgate sink", "%s: 'output.sink' must be \"pg\" (it is \"%s\")",
                           path, cfg->sink ? cfg->sink : "kafka");
        cg_config_destroy(cfg);
        return NULL;
    }
    if (cg_pg_config_check(cfg, errstr, sizeof(errstr))) {
        cg_cli_daemon_fail("cohortgate sink", "%s: %s", path, errstr);
        cg_config_destroy(cfg);
        return NULL;
    }
    return cfg;
}

/* --init or --load-vocab of one config: an exit status. */
static int setup(cg_config_t *cfg, const char *vocab)
{
    char summary[512], errstr[1024];
    int rc = vocab ? cg_pg_load_vocab(cfg, vocab, stderr, summary, sizeof(summary), errstr,
                                      sizeof(errstr))
                   : cg_pg_schema_init(cfg, summary, sizeof(summary), errstr, sizeof(errstr));
    if (rc)
        fprintf(stderr, "cohortgate sink %s: %s\n", vocab ? "--load-vocab" : "--init", errstr);
    else
        printf("%s\n", summary);
    return rc ? CG_EXIT_FAILURE : CG_EXIT_OK;
}

/* One database's sink until it stops: an exit status. */
static int run_one(cg_config_t *cfg, int idle_ms)
{
    char errstr[1024];
    /* the offsets live in the database's transactions: always exactly-once */
    cfg->semantics = CG_DELIVERY_EXACTLY_ONCE;
    cg_gateway_opts_t gopts = {.passthrough = 1, .idle_exit_ms = idle_ms};
    cg_gateway_t *gw = cg_gateway_new(cfg, &gopts, errstr, sizeof(errstr));
    if (!gw) {
        cg_cli_daemon_fail("cohortgate sink", "%s", errstr);
        return CG_EXIT_FAILURE;
    }
    cg_err_t rc = cg_cli_daemon_run(gw, "sink", 1);
    cg_gateway_destroy(gw);
    return rc == CG_OK ? CG_EXIT_OK : CG_EXIT_FAILURE;
}

typedef struct sinks {
    cg_config_t **cfgs;
    int idle_ms;
} sinks_t;

static int run_child(size_t i, void *ctx)
{
    sinks_t *s = ctx;
    return run_one(s->cfgs[i], s->idle_ms);
}

/* Whether a metrics.listen address is a fixed one: not "off", not port 0 (any free port). */
static int fixed_address(const char *listen)
{
    size_t n = listen ? strlen(listen) : 0;
    return n && strcmp(listen, "off") && !(n >= 2 && !strcmp(listen + n - 2, ":0"));
}

/* Several databases at once: each needs a consumer group and a metrics address of its own. */
static int distinct(const char *const *paths, cg_config_t **cfgs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++) {
            const char *what = NULL;
            const cg_kafka_conf_t *ki = cg_kafka_conf(cfgs[i]), *kj = cg_kafka_conf(cfgs[j]);
            if (ki && kj && ki->group_id && kj->group_id && !strcmp(ki->group_id, kj->group_id))
                what = "group_id (the databases would split one group's partitions)";
            else if (fixed_address(cfgs[i]->metrics_listen) && cfgs[j]->metrics_listen &&
                     !strcmp(cfgs[i]->metrics_listen, cfgs[j]->metrics_listen))
                what = "metrics.listen (one address serves one database)";
            if (what) {
                cg_cli_daemon_fail("cohortgate sink",
                                   "%s and %s have the same %s: give each its own", paths[j],
                                   paths[i], what);
                return -1;
            }
        }
    return 0;
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
    const char *configs[CG_CLI_MAX_INSTANCES], *vocab = NULL;
    size_t n = 0;
    int init = 0, idle_ms = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (n == CG_CLI_MAX_INSTANCES) {
                fprintf(stderr, "cohortgate sink: at most %d configs (-c)\n", CG_CLI_MAX_INSTANCES);
                return CG_EXIT_USAGE;
            }
            configs[n++] = optarg;
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
    if (!n || optind != argc) {
        fprintf(stderr, "cohortgate sink: %s\n\n",
                n ? "unexpected argument" : "a config is required (-c FILE)");
        usage(stderr);
        return CG_EXIT_USAGE;
    }
    /* every config loaded and checked before any database is touched */
    cg_config_t *cfgs[CG_CLI_MAX_INSTANCES];
    size_t loaded = 0;
    int rc = CG_EXIT_OK;
    for (; loaded < n; loaded++)
        if (!(cfgs[loaded] = load_sink_config(configs[loaded]))) {
            rc = CG_EXIT_FAILURE;
            break;
        }
    if (rc == CG_EXIT_OK && (init || vocab)) {
        for (size_t i = 0; i < n && rc == CG_EXIT_OK; i++)
            rc = setup(cfgs[i], vocab);
    } else if (rc == CG_EXIT_OK && n == 1) {
        rc = run_one(cfgs[0], idle_ms);
    } else if (rc == CG_EXIT_OK) {
        sinks_t ctx = {cfgs, idle_ms};
        rc = distinct(configs, cfgs, n)
                 ? CG_EXIT_FAILURE
                 : cg_cli_daemon_fork_each("sink", n, configs, run_child, &ctx);
    }
    for (size_t i = 0; i < loaded; i++)
        cg_config_destroy(cfgs[i]);
    return rc;
}
