/* cli_errors.c - located errors as every subcommand prints them, and loading a config that way
 * (cg_cli.h): plain lines for check, JSON log lines for the daemons. Apart from cli.c,
 * which dispatches to the subcommands, so the subcommands do not call back into it. */
#include "cg_cli.h"
#include "cg_config.h"
#include "cg_log.h"

#include <stdarg.h>

#define CG_CLI_MAX_CONFIG_ERRORS 64

void cg_cli_print_errors(FILE *out, const cg_error_t *errs, size_t n, size_t max)
{
    for (size_t i = 0; i < n && i < max; i++) {
        char line[CG_ERROR_FORMAT_SIZE];
        fprintf(out, "%s\n", cg_error_format_as(&errs[i], "error", line, sizeof(line)));
    }
    if (n > max)
        fprintf(out, "… and %zu more error(s)\n", n - max);
}

size_t cg_cli_print_spec_warnings(FILE *out, const cg_specset_t *ss, int as_errors)
{
    size_t n;
    const cg_error_t *w = cg_specset_warnings(ss, &n);
    for (size_t i = 0; i < n && i < CG_SPEC_MAX_WARNINGS; i++) {
        char line[CG_ERROR_FORMAT_SIZE];
        fprintf(out, "%s\n",
                cg_error_format_as(&w[i], as_errors ? "error" : "warning", line, sizeof(line)));
    }
    if (n > CG_SPEC_MAX_WARNINGS)
        fprintf(out, "… and %zu more warning(s)\n", n - CG_SPEC_MAX_WARNINGS);
    return n;
}

cg_config_t *cg_cli_load_config(const char *path)
{
    static cg_error_t errs[CG_CLI_MAX_CONFIG_ERRORS];
    size_t n = 0;
    cg_config_t *cfg = cg_config_load_file_all(path, errs, CG_CLI_MAX_CONFIG_ERRORS, &n);
    if (!cfg)
        cg_cli_print_errors(stderr, errs, n, CG_CLI_MAX_CONFIG_ERRORS);
    return cfg;
}

/* The daemons log JSON lines: a start-up error is one too, with its place kept in the text. */
static void log_errors(const cg_error_t *errs, size_t n, size_t max)
{
    for (size_t i = 0; i < n && i < max; i++) {
        char text[CG_ERROR_FORMAT_SIZE];
        cg_log(CG_LOG_ERROR, "config.invalid", "%s", cg_error_format(&errs[i], text, sizeof(text)));
    }
    if (n > max)
        cg_log(CG_LOG_ERROR, "config.invalid", "… and %zu more error(s)", n - max);
}

cg_config_t *cg_cli_daemon_config(const char *path)
{
    static cg_error_t errs[CG_CLI_MAX_CONFIG_ERRORS];
    size_t n = 0;
    cg_config_t *cfg = cg_config_load_file_all(path, errs, CG_CLI_MAX_CONFIG_ERRORS, &n);
    if (!cfg) {
        log_errors(errs, n, CG_CLI_MAX_CONFIG_ERRORS);
        return NULL;
    }
    n = cg_config_validate(cfg, errs, CG_CLI_MAX_CONFIG_ERRORS);
    if (n) {
        log_errors(errs, n, CG_CLI_MAX_CONFIG_ERRORS);
        cg_config_destroy(cfg);
        return NULL;
    }
    return cfg;
}

void cg_cli_daemon_fail(const char *name, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    cg_log(CG_LOG_ERROR, "gateway.start_failed", "%s: %s", name, text);
}
