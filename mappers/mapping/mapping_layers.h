/* mapping_layers.h - the mapping bundle's layers (internal to mappers/mapping/): spec layers
 * resolved to the files to compile (a later layer's spec replaces an earlier one of its name),
 * vocabulary layers loaded one load call each (a later call replaces codes), what each layer
 * contributed, and the warnings about lookups that find no vocabulary. See cg_mapping.h.
 */
#ifndef CG_MAPPING_LAYERS_H
#define CG_MAPPING_LAYERS_H

#include "cg_mapping.h"
#include "cg_vocab.h"

/* One spec file that is in use after the layers are resolved. */
typedef struct layer_spec_file {
    char *path;
    char *name;   /* its "spec"; NULL when it does not parse (the compiler says why) */
    size_t layer; /* index into the spec layers */
    size_t n_lookups, n_dynamic; /* its lookups; of them, with a vocabulary read from the input */
    char **vocabs;               /* the constant vocabularies its lookups name, each once */
    size_t n_vocabs;
    /* its text and parse (as the compiler parses it), kept for the compiler so that the file is
     * read and parsed once; NULL when it does not parse so (the compiler then says why), and
     * after compiling (cg_mapping__spec_texts_free) */
    char *text;
    struct json_t *root;
} layer_spec_file_t;

/* Reports (strings owned here), spec files and warnings. Zero it to start; free with
 * cg_mapping__layers_free(). */
typedef struct layer_set {
    cg_mapping_layer_t *layers;
    size_t n_layers;
    layer_spec_file_t *files;
    size_t n_files;
    cg_error_t *warnings;
    size_t n_warnings;
} layer_set_t;

/* Lists the spec files of each layer (a file, or a folder's *.json in name order), a later
 * layer's spec dropping an earlier layer's of the same name, and adds one SPECS report per
 * layer. -1 with the errors (a layer that cannot be read) counted in *n_errs. */
int cg_mapping__spec_layers(layer_set_t *ls, const char *const *paths, size_t n, cg_error_t *errs,
                            size_t max_errs, size_t *n_errs);
/* Drops the spec files' texts and parses once they are compiled. */
void cg_mapping__spec_texts_free(layer_set_t *ls);
/* Loads each vocabulary layer (a folder of *.csv or one file) into v as one load call and adds
 * one VOCAB report per layer. -1 when any layer had an error (all of them in errs). */
int cg_mapping__vocab_layers(layer_set_t *ls, cg_vocab_t *v, const char *const *paths, size_t n,
                             cg_error_t *errs, size_t max_errs, size_t *n_errs);
/* Adds a VOCAB report for an Athena folder that added n_codes new keys. -1 out of memory. */
int cg_mapping__athena_layer(layer_set_t *ls, const char *dir, size_t n_codes);
/* Adds a warning for each spec in ls->files whose lookups find no loaded vocabulary. */
void cg_mapping__lookup_warnings(layer_set_t *ls, const cg_vocab_t *v);
/* NULL-safe on its members; leaves ls zeroed. */
void cg_mapping__layers_free(layer_set_t *ls);

#endif
