/* cli_errors.c - located errors as every subcommand prints them, and loading a config that way
 * (cg_cli.h). Apart from cli.c,
 * which dispatches to the subcommands, so the subcommands do not call back into it. */
#include "cg_cli.h"
#include "cg_config.h"

void cg_cli_print_errors(FILE *out, const cg_error_t *errs, size_t n, size_t max)
{
    for (size_t i = 0; i < n && i < max; i++) {
        char where[512];
        cg_error_where(&errs[i], where, sizeof(where));
        fprintf(out, "%s%serror: %s\n", where, where[0] ? ": " : "", errs[i].text);
    }
    if (n > max)
        fprintf(out, "… and %zu more error(s)\n", n - max);
}

size_t cg_cli_print_warnings(FILE *out, const cg_specset_t *ss, int as_errors)
{
    size_t n;
    const cg_error_t *w = cg_specset_warnings(ss, &n);
    for (size_t i = 0; i < n && i < CG_SPEC_MAX_WARNINGS; i++) {
        char where[512];
        cg_error_where(&w[i], where, sizeof(where));
        fprintf(out, "%s%s%s: %s\n", where, where[0] ? ": " : "", as_errors ? "error" : "warning",
                w[i].text);
    }
    if (n > CG_SPEC_MAX_WARNINGS)
        fprintf(out, "… and %zu more warning(s)\n", n - CG_SPEC_MAX_WARNINGS);
    return n;
}

cg_config_t *cg_cli_load_config(const char *path)
{
    cg_error_t err;
    cg_config_t *cfg = cg_config_load_file(path, &err);
    if (!cfg)
        cg_cli_print_errors(stderr, &err, 1, 1);
    return cfg;
}
