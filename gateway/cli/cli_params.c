/* cli_params.c - --param NAME=VALUE, the specs' parameters from the command line (map, test,
 * check), as mapping.params gives them to the daemon (specs/README.md, "Parameters"). */
#include "cg_cli.h"

#include <stdio.h>
#include <string.h>

int cg_cli_parse_param(const char *cmd, char *arg, cg_spec_param_t *params, size_t *n, size_t max)
{
    char *eq = strchr(arg, '=');
    if (!eq || eq == arg) {
        fprintf(stderr, "cohortgate %s: --param takes NAME=VALUE (such as patient_id_types=MR|*)\n",
                cmd);
        return -1;
    }
    if (*n >= max) {
        fprintf(stderr, "cohortgate %s: at most %zu --param options\n", cmd, max);
        return -1;
    }
    *eq = '\0'; /* argv's own bytes: the name ends at '=' */
    params[(*n)++] = (cg_spec_param_t){arg, eq + 1};
    return 0;
}
