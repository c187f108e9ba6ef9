/* spec_set.c - a compiled spec set's accessors and its end (cg_spec.h), and where a spec
 * layer's vocabularies are looked for; apart from the compiler (spec_compile.c), which only
 * makes sets. */
#include "spec_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *cg_spec_vocab_dir(const char *path, char *buf, size_t size)
{
    struct stat st;
    int is_dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    const char *slash = strrchr(path, '/');
    if (is_dir)
        snprintf(buf, size, "%s/vocab", path);
    else if (slash)
        snprintf(buf, size, "%.*s/vocab", (int)(slash - path), path);
    else
        snprintf(buf, size, "vocab");
    return stat(buf, &st) == 0 && S_ISDIR(st.st_mode) ? buf : NULL;
}

const cg_error_t *cg_specset_warnings(const cg_specset_t *ss, size_t *n)
{
    *n = ss ? ss->n_warnings : 0;
    return ss ? ss->warnings : NULL;
}

size_t cg_specset_count(const cg_specset_t *ss)
{
    return ss ? ss->n_specs : 0;
}

void cg_specset_destroy(cg_specset_t *ss)
{
    if (!ss)
        return;
    for (size_t i = 0; i < ss->n_regexes; i++)
        pcre2_code_free(ss->regexes[i]);
    free(ss->regexes);
    for (size_t i = 0; i < ss->n_owned; i++)
        ss->owned[i].free(ss->owned[i].p);
    free(ss->owned);
    free(ss->specs);
    free(ss->sel);
    free(ss->sel_specs);
    free(ss->warnings);
    cg_arena_destroy(&ss->arena);
    free(ss);
}
