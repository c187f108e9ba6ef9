/* cli.c - subcommand dispatch, top-level --help and --version. */
#include "cg_cli.h"

#include <string.h>

typedef struct cg_cli_cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} cg_cli_cmd_t;

static const cg_cli_cmd_t cg_cli_cmds[] = {
    {"run", cg_cli_run, "run the gateway daemon: consume raw topics, map, publish cohort topics"},
    {"listen", cg_cli_listen, "receive HL7 v2 over MLLP, store each message in a raw topic, ACK"},
    {"send", cg_cli_send, "send HL7 v2 files over MLLP (plaintext or TLS) and check each ACK"},
    {"sink", cg_cli_sink, "apply record topics to PostgreSQL OMOP tables, exactly once"},
    {"map", cg_cli_map, "dry-run mapping specs on files and print the records as NDJSON"},
    {"parse", cg_cli_parse, "decode HL7 v2 or XML files and print their structure or values"},
    {"check", cg_cli_check, "load a config, compile its specs and rules, report errors"},
    {"cohort", cg_cli_cohort,
     "Circe cohort definitions: check, explain the SQL, run on PostgreSQL"},
    {"test", cg_cli_test, "run mapping specs' example cases (input beside expected NDJSON)"},
    {"schema", cg_cli_schema, "print the JSON Schema of the records, quality records and headers"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: cohortgate COMMAND [OPTIONS] [ARGS]\n\n"
                 "cohortgate maps HL7 v2 and CDA clinical feeds from Kafka into OMOP CDM records\n"
                 "on per-cohort Kafka topics.\n\n"
                 "commands:\n");
    for (size_t i = 0; i < sizeof(cg_cli_cmds) / sizeof(cg_cli_cmds[0]); i++)
        fprintf(out, "  %-7s %s\n", cg_cli_cmds[i].name, cg_cli_cmds[i].summary);
    fprintf(out, "\noptions:\n"
                 "  -h, --help     show this help; `cohortgate COMMAND --help` for a command\n"
                 "  -V, --version  print the version\n");
}

int cg_cli_main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CG_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return CG_EXIT_OK;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("cohortgate %s\n", CG_VERSION);
        return CG_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(cg_cli_cmds) / sizeof(cg_cli_cmds[0]); i++)
        if (!strcmp(cmd, cg_cli_cmds[i].name))
            return cg_cli_cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "cohortgate: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return CG_EXIT_USAGE;
}
