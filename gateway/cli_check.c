/* cli_check.c - `cohortgate check`: load a config and report its errors, like `nginx -t`. */
#include "cg_cli.h"
#include "cg_config.h"

#include <getopt.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cohortgate check -c CONFIG\n       cohortgate check --reference\n\n"
            "Load CONFIG and check every setting without connecting to anything. Errors are\n"
            "printed as FILE:LINE:COLUMN: error: TEXT; the exit status is 1 if there are any.\n\n"
            "options:\n"
            "  -c, --config FILE   gateway config to check\n"
            "  -h, --help          show this help\n");
}

int cg_cli_check(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {"reference", no_argument, NULL, 'R'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (c == 'c') {
            config = optarg;
        } else if (c == 'R') {
            cg_config_write_reference(stdout);
            return CG_EXIT_OK;
        } else if (c == 'h') {
            usage(stdout);
            return CG_EXIT_OK;
        } else {
            usage(stderr);
            return CG_EXIT_USAGE;
        }
    }
    if (!config || optind != argc) {
        usage(stderr);
        return CG_EXIT_USAGE;
    }
    cg_error_t err;
    cg_config_t *cfg = cg_config_load_file(config, &err);
    if (!cfg) {
        fprintf(stderr, "%s:%d:%d: error: %s\n", err.file, err.line, err.column, err.text);
        return CG_EXIT_FAILURE;
    }
    printf("%s: ok (%zu input topic(s), records to %s, dead letters to %s)\n", config,
           cfg->n_inputs, cfg->output_topic, cfg->dead_letter_topic);
    cg_config_destroy(cfg);
    return CG_EXIT_OK;
}
