/* cg_cli.h - the cohortgate command line: one entry point per subcommand.
 *
 * Each cg_cli_<cmd>() takes the arguments after the subcommand name (argv[0] is the subcommand),
 * writes to the given streams, and returns the process exit status. They are in the gateway
 * library so tests can drive the CLI in-process.
 */
#ifndef CG_CLI_H
#define CG_CLI_H

#include <stdio.h>

#include "cg_err.h"
#include "cg_mapping.h"

/* Exit statuses shared by every subcommand. */
enum {
    CG_EXIT_OK = 0,
    CG_EXIT_FAILURE = 1, /* some input failed (parse, map) or check found errors */
    CG_EXIT_USAGE = 2,   /* bad command line */
};

int cg_cli_main(int argc, char **argv);
int cg_cli_run(int argc, char **argv);
int cg_cli_listen(int argc, char **argv);
int cg_cli_send(int argc, char **argv);
int cg_cli_sink(int argc, char **argv);
int cg_cli_map(int argc, char **argv);
int cg_cli_parse(int argc, char **argv);
int cg_cli_check(int argc, char **argv);
int cg_cli_test(int argc, char **argv);
int cg_cli_cohort(int argc, char **argv);
/* `cohortgate cohort withdraw` and `retire` (cli_cohort_admin.c); argv[0] is the action. */
int cg_cli_cohort_admin(int argc, char **argv);
int cg_cli_schema(int argc, char **argv);

/* Prints located errors as "FILE:LINE:COLUMN: error: TEXT" (or "FILE: error: TEXT"), one a
 * line, at most max of them, then how many more there were. */
void cg_cli_print_errors(FILE *out, const cg_error_t *errs, size_t n, size_t max);

/* --spec and --vocab given more than once (map, test, check): layers in the order given, the
 * first the base (cg_mapping.h). */
#define CG_CLI_MAX_LAYERS 32
typedef struct cg_cli_layers {
    const char *paths[CG_CLI_MAX_LAYERS];
    size_t n;
} cg_cli_layers_t;
/* Adds a layer; -1 after printing "cohortgate CMD: too many OPTION layers" to stderr. */
int cg_cli_layers_add(cg_cli_layers_t *l, const char *cmd, const char *option, const char *path);
/* Sets mo's specs, more_specs, vocab and more_vocab from the layers (which must outlive mo). */
void cg_cli_layers_opts(const cg_cli_layers_t *specs, const cg_cli_layers_t *vocab,
                        cg_mapping_opts_t *mo);
/* What each layer of m contributed and overrode, one line a layer ("  specs layer 2 DIR: ..."),
 * to out; its warnings as "FILE: warning: TEXT" to warn. */
void cg_cli_print_layers(FILE *out, const cg_mapping_t *m);
void cg_cli_print_warnings(FILE *warn, const cg_mapping_t *m);

/* Loads a config file for check; NULL after printing its errors (every one) to stderr. */
typedef struct cg_config cg_config_t;
cg_config_t *cg_cli_load_config(const char *path);
/* Loads a daemon's config (run, listen, sink) and validates it as `check -c` does
 * (cg_config_validate); NULL after logging every error as a JSON line on stderr, the daemons'
 * log format (event config.invalid, the message FILE:LINE:COLUMN: TEXT). */
cg_config_t *cg_cli_daemon_config(const char *path);
/* A daemon's start-up error (JSON line, event gateway.start_failed): "NAME: TEXT". */
void cg_cli_daemon_fail(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Runs gw (run, listen, sink) until it ends: SIGINT and SIGTERM stop it, SIGHUP reloads when
 * reloads is set; a failure is logged (event gateway.failed, "NAME: REASON"). The run's
 * result. */
typedef struct cg_engine cg_gateway_t; /* cg_gateway.h */
cg_err_t cg_cli_daemon_run(cg_gateway_t *gw, const char *name, int reloads);
/* Several daemons of one command, one process each (isolated: a crash of one corrupts no
 * other): forks child(i, ctx) for each of the n instances (at most CG_CLI_MAX_INSTANCES; its
 * exit status is the child's), their log lines marked "instance": instances[i]. SIGTERM,
 * SIGINT and SIGHUP are passed on to every child; when one ends in failure the others get
 * SIGTERM. Waits for all; CG_EXIT_OK when every one exited 0. Call before any thread starts. */
#define CG_CLI_MAX_INSTANCES 32
int cg_cli_daemon_fork_each(const char *name, size_t n, const char *const *instances,
                            int (*child)(size_t i, void *ctx), void *ctx);

/* The spec set's warnings (cg_specset_warnings) as FILE:LINE:COLUMN: warning: TEXT, or as
 * errors (map --strict); returns how many there are. */
size_t cg_cli_print_spec_warnings(FILE *out, const cg_specset_t *ss, int as_errors);

/* --param NAME=VALUE: appended to params (at most max; *n counts them), pointing into arg,
 * whose '=' becomes the name's end. -1 after printing to stderr what is wrong. */
#define CG_CLI_MAX_PARAMS 32
int cg_cli_parse_param(const char *cmd, char *arg, cg_spec_param_t *params, size_t *n, size_t max);

/* pseudonym.authorities from the command line (map, test, check --spec): --authority-alias
 * FROM=TO, --authority-default FACILITY=AUTHORITY (each repeatable), --authority-missing
 * refuse|facility. Strings point into argv. */
#define CG_CLI_MAX_AUTHORITIES 64
typedef struct cg_cli_authorities {
    cg_pseudo_pair_t aliases[CG_CLI_MAX_AUTHORITIES], defaults[CG_CLI_MAX_AUTHORITIES];
    size_t n_aliases, n_defaults;
    cg_pseudo_missing_t missing;
} cg_cli_authorities_t;
/* getopt_long codes of the three options (above any short option's) */
enum { CG_CLI_OPT_AUTH_ALIAS = 0x300, CG_CLI_OPT_AUTH_DEFAULT, CG_CLI_OPT_AUTH_MISSING };
#define CG_CLI_AUTHORITY_OPTIONS                                                                   \
    {"authority-alias", required_argument, NULL, CG_CLI_OPT_AUTH_ALIAS},                           \
        {"authority-default", required_argument, NULL, CG_CLI_OPT_AUTH_DEFAULT},                   \
    {                                                                                              \
        "authority-missing", required_argument, NULL, CG_CLI_OPT_AUTH_MISSING                      \
    }
#define CG_CLI_AUTHORITY_HELP                                                                      \
    "      --authority-alias FROM=TO  hash identifiers under authority FROM as under TO (as\n"     \
    "                        pseudonym.authorities.aliases); repeatable\n"                         \
    "      --authority-default FACILITY=AUTHORITY  the authority of identifiers without one\n"     \
    "                        from sending facility FACILITY (pseudonym.authorities.defaults);\n"   \
    "                        repeatable\n"                                                         \
    "      --authority-missing refuse|facility  an identifier without an authority and no\n"       \
    "                        default: refuse it (the default: the message fails), or hash it\n"    \
    "                        under its sending facility (pseudonym.authorities.missing)\n"
/* Handles one of the options (code opt, value arg); -1 after printing what is wrong. */
int cg_cli_parse_authority(const char *cmd, int opt, char *arg, cg_cli_authorities_t *a);
/* As cg_mapping_opts_t.authorities takes them. */
cg_pseudo_authority_opts_t cg_cli_authority_opts(const cg_cli_authorities_t *a);

/* An option's milliseconds (1 to 86400000, a day) into *out; -1 after printing to stderr
 * "cohortgate CMD: OPTION takes milliseconds ...". */
int cg_cli_parse_ms(const char *cmd, const char *option, const char *arg, int *out);

/* Shared by map and test: map every HL7 v2 message of a buffer or file, writing one record
 * envelope a line to out and one error a line to errs ("NAME: message N: STAGE: REASON"), a
 * line for each entry left out ("NAME: document N: quality: map: FINDING"); a
 * message that maps to no record is a line there too ("NAME: message N: no_rows: TYPE: …" or
 * "…: no_research_content: TYPE: REASON (spec NAME)"), not an error. An input that holds no
 * message at all (empty, a BOM, an empty MLLP frame, a batch envelope alone) is the error the
 * gateway dead-letters it with. */
typedef struct cg_hl7_msg cg_hl7_msg_t;
typedef struct cg_cli_map_counts {
    size_t messages, failed, rows, bytes;
    size_t quality;                      /* entries left out (on_error "entry") */
    size_t no_rows, no_research_content; /* messages that mapped to no record, by outcome */
    int progress;                        /* show progress on stderr when it is a terminal */
} cg_cli_map_counts_t;
/* Maps buf and writes its records to out; trace: cg_row_encode flags (CG_ROW_ENCODE_TRACE,
 * CG_ROW_ENCODE_IDS_AS_STRINGS). Returns the number of messages that failed. */
size_t cg_cli_map_buffer(cg_mapping_worker_t *mw, cg_hl7_msg_t *msg, const char *name,
                         const char *buf, size_t len, int trace, FILE *out, FILE *errs,
                         cg_cli_map_counts_t *cnt);
/* path "-" is stdin. Returns -1 when the file cannot be read. */
int cg_cli_map_file(cg_mapping_worker_t *mw, cg_hl7_msg_t *msg, const char *path, int trace,
                    FILE *out, FILE *errs, cg_cli_map_counts_t *cnt);

#endif
