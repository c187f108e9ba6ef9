/* cg_cli.h - the cohortgate command line: one entry point per subcommand.
 *
 * Each cg_cli_<cmd>() takes the arguments after the subcommand name (argv[0] is the subcommand),
 * writes to the given streams, and returns the process exit status. They are in the gateway
 * library so tests can drive the CLI in-process.
 */
#ifndef CG_CLI_H
#define CG_CLI_H

#include <stdio.h>

/* Exit statuses shared by every subcommand. */
enum {
    CG_EXIT_OK = 0,
    CG_EXIT_FAILURE = 1, /* some input failed (parse, map) or check found errors */
    CG_EXIT_USAGE = 2,   /* bad command line */
};

int cg_cli_main(int argc, char **argv);
int cg_cli_run(int argc, char **argv);
int cg_cli_map(int argc, char **argv);
int cg_cli_parse(int argc, char **argv);
int cg_cli_check(int argc, char **argv);

#endif
