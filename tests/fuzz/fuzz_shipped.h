/* fuzz_shipped.h - the state the mapping fuzz targets share: every shipped spec compiled once
 * with the shipped vocabularies and a throwaway pseudonym key, and one mapper with tracing on.
 * Identifiers without an assigning authority take their sending facility's (missing
 * "facility", an alias and a default too), so that inputs without PID-3.4 reach the rules. */
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
static cg_pseudo_authorities_t *authorities;

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
    static const cg_pseudo_pair_t aliases[] = {{"2.16.840.1.113883.19.5", "HOSP"}};
    static const cg_pseudo_pair_t defaults[] = {{"H", "HOSP"}};
    cg_pseudo_authority_opts_t ao = {aliases, 1, defaults, 1, CG_PSEUDO_MISSING_FACILITY};
    authorities = cg_pseudo_authorities_new(&ao, NULL, err, sizeof(err));
    cg_spec_env_t env = {.vocab = vocab,
                         .pseudo = pseudo,
                         .authorities = authorities,
                         .source_utc_offset = "+01:00"};
    shipped = cg_specset_load(CG_SOURCE_DIR "/specs", &env, NULL, 0, &n);
    if (!shipped)
        abort(); /* the shipped specs must compile */
    mapper = cg_mapper_new(shipped, &env, err, sizeof(err));
    if (!mapper)
        abort();
    cg_mapper_set_trace(mapper, 1);
}

#endif
