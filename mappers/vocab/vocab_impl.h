/* vocab_impl.h - internals shared by the vocab_*.c files (not a public header).
 *
 * vocab.c owns the table; the loaders (vocab_csv.c, vocab_athena.c) fill it through the
 * functions below and call nothing in each other.
 */
#ifndef CG_VOCAB_IMPL_H
#define CG_VOCAB_IMPL_H

#include <stdint.h>

#include "cg_vocab.h"
#include "cg_csv.h"

#define CG_VOCAB_SHOW_MAX CG_CSV_SHOW_MAX /* bytes of offending text quoted in an error */
#define MAX_DOMAINS       255             /* domain index 0 means "unknown" */

typedef struct ventry {
    const char *code;
    uint32_t code_len;
    uint32_t hash;
    uint16_t vocab;
    uint8_t domain; /* index into domains; 0 = unknown */
    uint8_t flags;  /* CG_VOCAB_* */
    int32_t concept_id;
    int32_t standard_id;
    uint32_t gen; /* load call that set it */
} ventry_t;

typedef struct vname {
    const char *name;
    uint32_t len;
    cg_vocab_domain_t dom; /* for domain names */
} vname_t;

struct cg_vocab {
    cg_arena_t arena;
    char *str_cur;
    size_t str_left;
    size_t str_bytes;
    vname_t *vocabs;
    size_t n_vocabs, cap_vocabs;
    vname_t domains[MAX_DOMAINS + 1];
    size_t n_domains; /* including slot 0 */
    ventry_t *entries;
    size_t n_entries, cap_entries;
    uint32_t *slots; /* entry index + 1; 0 = empty */
    size_t cap_slots;
    uint32_t gen;
    cg_vocab_load_stats_t last; /* what the load call gen did */
};

/* Internal entry flag (not handed out): set from a source-to-concept row, so that several rows
 * of one key are a one-to-many mapping rather than a duplicate. */
#define CG_VOCAB__STCM 0x80u

/* Starts a load call: a new generation and empty stats. */
void cg_vocab__begin_load(cg_vocab_t *v);
/* Counts a key set by the current load call (before e is overwritten: old values are read for
 * the override example). */
void cg_vocab__note_set(cg_vocab_t *v, const ventry_t *e, int created, int32_t new_std);

/* Index of the vocabulary name, added when new; -1 when out of memory or too many. */
int cg_vocab__intern_vocab(cg_vocab_t *v, cg_slice_t name);
/* Domain index (1..), added when new; 0 when empty, -1 when out of memory or too many. */
int cg_vocab__intern_domain(cg_vocab_t *v, cg_slice_t name);
/* The entry for the key, created (zeroed but for the key) when new; *created tells which.
 * NULL when out of memory. */
ventry_t *cg_vocab__upsert(cg_vocab_t *v, int vocab, const char *code, size_t len, int *created);

/* Whether the vocabulary_id is interned, i.e. some load call set a code of it. */
int cg_vocab__has_vocab_id(const cg_vocab_t *v, cg_slice_t name);

/* Copies up to CG_VOCAB_SHOW_MAX bytes of s for an error text, control bytes as '?'. */
const char *cg_vocab__show(const char *s, size_t n, char buf[CG_VOCAB_SHOW_MAX + 4]);

/* Decimal 0..INT32_MAX, digits only. Inline: the loaders call it for every id they read. */
static inline int cg_vocab__parse_id(const char *s, size_t n, int32_t *out)
{
    if (!n || n > 10)
        return -1;
    int64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        x = x * 10 + (s[i] - '0');
    }
    if (x > INT32_MAX)
        return -1;
    *out = (int32_t)x;
    return 0;
}

#endif
