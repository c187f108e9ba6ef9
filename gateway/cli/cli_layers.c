/* cli_layers.c - spec and vocabulary layers on the command line (--spec and --vocab given more
 * than once) and the report of what each layer contributed, as map, test and check use them
 * (cg_cli.h). */
#include "cg_cli.h"

#include <string.h>

int cg_cli_layers_add(cg_cli_layers_t *l, const char *cmd, const char *option, const char *path)
{
    if (l->n == CG_CLI_MAX_LAYERS) {
        fprintf(stderr, "cohortgate %s: too many %s layers (at most %d)\n", cmd, option,
                CG_CLI_MAX_LAYERS);
        return -1;
    }
    l->paths[l->n++] = path;
    return 0;
}

void cg_cli_layers_opts(const cg_cli_layers_t *specs, const cg_cli_layers_t *vocab,
                        cg_mapping_opts_t *mo)
{
    mo->specs = specs->n ? specs->paths[0] : NULL;
    mo->more_specs = specs->n > 1 ? specs->paths + 1 : NULL;
    mo->n_more_specs = specs->n > 1 ? specs->n - 1 : 0;
    mo->vocab = vocab->n ? vocab->paths[0] : NULL;
    mo->more_vocab = vocab->n > 1 ? vocab->paths + 1 : NULL;
    mo->n_more_vocab = vocab->n > 1 ? vocab->n - 1 : 0;
}

void cg_cli_print_layers(FILE *out, const cg_mapping_t *m)
{
    const cg_mapping_layer_t *l;
    size_t n = cg_mapping_layers(m, &l);
    size_t n_specs = 0, n_vocab = 0;
    for (size_t i = 0; i < n; i++) {
        if (l[i].kind == CG_MAPPING_LAYER_SPECS) {
            fprintf(out, "  specs layer %zu %s: %zu spec(s)", ++n_specs, l[i].path, l[i].n_items);
            if (l[i].n_items)
                fprintf(out, " (%s)", l[i].items);
            if (l[i].n_overridden)
                fprintf(out, "; %zu replaced by a later layer", l[i].n_overridden);
            if (l[i].n_overrides)
                fprintf(out, "; overrides %s", l[i].overrides);
        } else {
            int athena = !strncmp(l[i].items, "Athena", 6);
            fprintf(out,
                    athena ? "  vocab layer %zu %s: %zu new code(s)"
                           : "  vocab layer %zu %s: %zu code(s)",
                    ++n_vocab, l[i].path, l[i].n_items);
            if (l[i].n_items)
                fprintf(out, " (%s)", l[i].items);
            if (l[i].unmapped)
                fprintf(out, ", %zu reviewed as no mapping (concept 0)", l[i].unmapped);
            if (l[i].not_valid)
                fprintf(out, ", %zu row(s) left out (invalid_reason or validity dates)",
                        l[i].not_valid);
            if (l[i].n_overrides)
                fprintf(out, "; overrides %zu code(s): %s", l[i].n_overrides, l[i].overrides);
        }
        fputc('\n', out);
    }
    if (!n_vocab)
        fprintf(out, "  no vocabulary layer\n");
}

void cg_cli_print_warnings(FILE *warn, const cg_mapping_t *m)
{
    const cg_error_t *w;
    size_t n = cg_mapping_warnings(m, &w);
    for (size_t i = 0; i < n; i++) {
        char line[CG_ERROR_FORMAT_SIZE];
        fprintf(warn, "%s\n", cg_error_format_as(&w[i], "warning", line, sizeof(line)));
    }
}
