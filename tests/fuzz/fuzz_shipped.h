/* fuzz_shipped.h - the state the mapping fuzz targets share: every shipped spec compiled once
 * with the shipped vocabularies and a throwaway pseudonym key, and one mapper with tracing on. */
#ifndef FUZZ_SHIPPED_H
#define FUZZ_SHIPPED_H

#include <stdlib.h>

#include "cg_pseudo.h"
#include "cg_spec.h"
#include "cg_vocab.h"

static cg_specset_t *shipped;
static cg_mapper_t *mapper;
static cg_vocab_t *vocab;
static cg_pseudo_t *pseudo;

static void fuzz_shipped_init(void)
{
    char err[256];
    size_t n;
    cg_pseudo_key_t *k =
        cg_pseudo_key_new("fuzz-key-fuzz-key-fuzz-key-fuzz-key!", 36, err, sizeof(err));
    pseudo = cg_pseudo_new(k, 30, err, sizeof(err));
    cg_pseudo_key_destroy(k);
    vocab = cg_vocab_new();
    cg_vocab_load_csv_dir(vocab, CG_SOURCE_DIR "/specs/vocab", NULL, 0, &n);
    cg_spec_env_t env = {.vocab = vocab, .pseudo = pseudo, .source_utc_offset = "+01:00"};
    shipped = cg_specset_load(CG_SOURCE_DIR "/specs", &env, NULL, 0, &n);
    if (!shipped)
        abort(); /* the shipped specs must compile */
    mapper = cg_mapper_new(shipped, &env, err, sizeof(err));
    if (!mapper)
        abort();
    cg_mapper_set_trace(mapper, 1);
}

#endif
