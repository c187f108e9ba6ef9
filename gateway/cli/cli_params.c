/* cli_params.c - --param NAME=VALUE, the specs' parameters from the command line (map, test,
 * check), as mapping.params gives them to the daemon (specs/README.md, "Parameters"); and the
 * --authority-* options, as pseudonym.authorities. */
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

static int parse_pair(const char *cmd, const char *option, const char *form, char *arg,
                      cg_pseudo_pair_t *pairs, size_t *n)
{
    char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1]) {
        fprintf(stderr, "cohortgate %s: %s takes %s\n", cmd, option, form);
        return -1;
    }
    if (*n >= CG_CLI_MAX_AUTHORITIES) {
        fprintf(stderr, "cohortgate %s: at most %d %s options\n", cmd, CG_CLI_MAX_AUTHORITIES,
                option);
        return -1;
    }
    *eq = '\0';
    pairs[(*n)++] = (cg_pseudo_pair_t){arg, eq + 1};
    return 0;
}

int cg_cli_parse_authority(const char *cmd, int opt, char *arg, cg_cli_authorities_t *a)
{
    switch (opt) {
    case CG_CLI_OPT_AUTH_ALIAS:
        return parse_pair(cmd, "--authority-alias",
                          "FROM=TO (such as 2.16.840.1.113883.19.5=HOSP_A)", arg, a->aliases,
                          &a->n_aliases);
    case CG_CLI_OPT_AUTH_DEFAULT:
        return parse_pair(cmd, "--authority-default",
                          "FACILITY=AUTHORITY (such as HOSP_A=HOSP_A_MRN)", arg, a->defaults,
                          &a->n_defaults);
    case CG_CLI_OPT_AUTH_MISSING:
        if (!strcmp(arg, "refuse") || !strcmp(arg, "facility")) {
            a->missing =
                strcmp(arg, "refuse") ? CG_PSEUDO_MISSING_FACILITY : CG_PSEUDO_MISSING_REFUSE;
            return 0;
        }
        fprintf(stderr, "cohortgate %s: --authority-missing is refuse or facility\n", cmd);
        return -1;
    }
    return -1;
}

cg_pseudo_authority_opts_t cg_cli_authority_opts(const cg_cli_authorities_t *a)
{
    return (cg_pseudo_authority_opts_t){.aliases = a->aliases,
                                        .n_aliases = a->n_aliases,
                                        .defaults = a->defaults,
                                        .n_defaults = a->n_defaults,
                                        .missing = a->missing};
}
