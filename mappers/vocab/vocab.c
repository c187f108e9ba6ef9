/* vocab.c - the vocabulary table: domains, interned names, the code hash table and lookups (see
 * cg_vocab.h). The loaders fill it (vocab_csv.c, vocab_athena.c); coding-system names are in
 * vocab_system.c.
 */
#include "vocab_impl.h"

#include "cg_csv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VOCABS 65535
#define STR_BLOCK  65536 /* string bump block taken from the arena */

static const char *const domain_names[CG_VOCAB_DOMAIN__COUNT] = {
    [CG_VOCAB_DOMAIN_OTHER] = "",
    [CG_VOCAB_DOMAIN_CONDITION] = "Condition",
    [CG_VOCAB_DOMAIN_MEASUREMENT] = "Measurement",
    [CG_VOCAB_DOMAIN_OBSERVATION] = "Observation",
    [CG_VOCAB_DOMAIN_DRUG] = "Drug",
    [CG_VOCAB_DOMAIN_PROCEDURE] = "Procedure",
    [CG_VOCAB_DOMAIN_DEVICE] = "Device",
    [CG_VOCAB_DOMAIN_VISIT] = "Visit",
    [CG_VOCAB_DOMAIN_GENDER] = "Gender",
    [CG_VOCAB_DOMAIN_RACE] = "Race",
    [CG_VOCAB_DOMAIN_ETHNICITY] = "Ethnicity",
    [CG_VOCAB_DOMAIN_UNIT] = "Unit",
    [CG_VOCAB_DOMAIN_TYPE_CONCEPT] = "Type Concept",
    [CG_VOCAB_DOMAIN_MEAS_VALUE] = "Meas Value",
    [CG_VOCAB_DOMAIN_MEAS_VALUE_OPERATOR] = "Meas Value Operator",
    [CG_VOCAB_DOMAIN_ROUTE] = "Route",
    [CG_VOCAB_DOMAIN_SPEC_ANATOMIC_SITE] = "Spec Anatomic Site",
    [CG_VOCAB_DOMAIN_METADATA] = "Metadata",
};

const char *cg_vocab_domain_name(cg_vocab_domain_t d)
{
    if ((unsigned)d >= CG_VOCAB_DOMAIN__COUNT)
        return "";
    return domain_names[d];
}

cg_vocab_domain_t cg_vocab_domain_parse(cg_slice_t s)
{
    for (int d = 1; d < CG_VOCAB_DOMAIN__COUNT; d++)
        if (s.len == strlen(domain_names[d]) && memcmp(s.ptr, domain_names[d], s.len) == 0)
            return (cg_vocab_domain_t)d;
    return CG_VOCAB_DOMAIN_OTHER;
}

/* ---- table ---- */

cg_vocab_t *cg_vocab_new(void)
{
    cg_vocab_t *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    cg_arena_init(&v->arena, 1u << 20);
    v->n_domains = 1;
    return v;
}

void cg_vocab_destroy(cg_vocab_t *v)
{
    if (!v)
        return;
    cg_arena_destroy(&v->arena);
    free(v->vocabs);
    free(v->entries);
    free(v->slots);
    free(v);
}

size_t cg_vocab_count(const cg_vocab_t *v)
{
    return v ? v->n_entries : 0;
}

size_t cg_vocab_memory(const cg_vocab_t *v)
{
    if (!v)
        return 0;
    return sizeof(*v) + v->cap_vocabs * sizeof(vname_t) + v->cap_entries * sizeof(ventry_t) +
           v->cap_slots * sizeof(uint32_t) + v->str_bytes;
}

/* Strings are packed back to back in blocks from the arena (the arena would align each one). */
static const char *str_dup(cg_vocab_t *v, const char *s, size_t n)
{
    if (n + 1 > v->str_left) {
        size_t block = n + 1 > STR_BLOCK ? n + 1 : STR_BLOCK;
        char *b = cg_arena_alloc(&v->arena, block);
        if (!b)
            return NULL;
        v->str_cur = b;
        v->str_left = block;
        v->str_bytes += block;
    }
    char *p = v->str_cur;
    memcpy(p, s, n);
    p[n] = '\0';
    v->str_cur += n + 1;
    v->str_left -= n + 1;
    return p;
}

static int find_vocab(const cg_vocab_t *v, cg_slice_t name)
{
    for (size_t i = 0; i < v->n_vocabs; i++)
        if (v->vocabs[i].len == name.len && memcmp(v->vocabs[i].name, name.ptr, name.len) == 0)
            return (int)i;
    return -1;
}

int cg_vocab__intern_vocab(cg_vocab_t *v, cg_slice_t name)
{
    int i = find_vocab(v, name);
    if (i >= 0)
        return i;
    if (v->n_vocabs >= MAX_VOCABS)
        return -1;
    if (v->n_vocabs == v->cap_vocabs) {
        size_t cap = v->cap_vocabs ? v->cap_vocabs * 2 : 16;
        vname_t *nv = realloc(v->vocabs, cap * sizeof(*nv));
        if (!nv)
            return -1;
        v->vocabs = nv;
        v->cap_vocabs = cap;
    }
    const char *s = str_dup(v, name.ptr, name.len);
    if (!s)
        return -1;
    v->vocabs[v->n_vocabs] = (vname_t){s, (uint32_t)name.len, CG_VOCAB_DOMAIN_OTHER};
    return (int)v->n_vocabs++;
}

int cg_vocab__intern_domain(cg_vocab_t *v, cg_slice_t name)
{
    if (!name.len)
        return 0;
    for (size_t i = 1; i < v->n_domains; i++)
        if (v->domains[i].len == name.len && memcmp(v->domains[i].name, name.ptr, name.len) == 0)
            return (int)i;
    if (v->n_domains > MAX_DOMAINS)
        return -1;
    const char *s = str_dup(v, name.ptr, name.len);
    if (!s)
        return -1;
    v->domains[v->n_domains] = (vname_t){s, (uint32_t)name.len, cg_vocab_domain_parse(name)};
    return (int)v->n_domains++;
}

static uint32_t key_hash(int vocab, const char *code, size_t len)
{
    uint64_t h = UINT64_C(1469598103934665603);
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)code[i];
        h *= UINT64_C(1099511628211);
    }
    h ^= (uint64_t)(vocab + 1) * UINT64_C(0x9E3779B97F4A7C15);
    h ^= h >> 29;
    h *= UINT64_C(0xBF58476D1CE4E5B9);
    h ^= h >> 32;
    return (uint32_t)h;
}

static ventry_t *find_entry(const cg_vocab_t *v, int vocab, const char *code, size_t len,
                            uint32_t h)
{
    if (!v->cap_slots)
        return NULL;
    size_t mask = v->cap_slots - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t s = v->slots[i];
        if (!s)
            return NULL;
        ventry_t *e = &v->entries[s - 1];
        if (e->hash == h && e->vocab == vocab && e->code_len == len &&
            memcmp(e->code, code, len) == 0)
            return e;
    }
}

static int grow_slots(cg_vocab_t *v)
{
    size_t cap = v->cap_slots ? v->cap_slots * 2 : 1024;
    uint32_t *ns = calloc(cap, sizeof(*ns));
    if (!ns)
        return -1;
    size_t mask = cap - 1;
    for (size_t k = 0; k < v->n_entries; k++) {
        size_t i = v->entries[k].hash & mask;
        while (ns[i])
            i = (i + 1) & mask;
        ns[i] = (uint32_t)(k + 1);
    }
    free(v->slots);
    v->slots = ns;
    v->cap_slots = cap;
    return 0;
}

ventry_t *cg_vocab__upsert(cg_vocab_t *v, int vocab, const char *code, size_t len, int *created)
{
    uint32_t h = key_hash(vocab, code, len);
    ventry_t *e = find_entry(v, vocab, code, len, h);
    *created = 0;
    if (e)
        return e;
    if (v->n_entries >= UINT32_MAX - 1)
        return NULL;
    if ((v->n_entries + 1) * 2 > v->cap_slots && grow_slots(v) != 0) /* load <= 1/2 */
        return NULL;
    if (v->n_entries == v->cap_entries) {
        size_t cap = v->cap_entries ? v->cap_entries * 2 : 256;
        ventry_t *ne = realloc(v->entries, cap * sizeof(*ne));
        if (!ne)
            return NULL;
        v->entries = ne;
        v->cap_entries = cap;
    }
    const char *s = str_dup(v, code, len);
    if (!s)
        return NULL;
    e = &v->entries[v->n_entries];
    memset(e, 0, sizeof(*e));
    e->code = s;
    e->code_len = (uint32_t)len;
    e->hash = h;
    e->vocab = (uint16_t)vocab;
    size_t mask = v->cap_slots - 1, i = h & mask;
    while (v->slots[i])
        i = (i + 1) & mask;
    v->slots[i] = (uint32_t)(++v->n_entries);
    *created = 1;
    return e;
}

size_t cg_vocab_vocabulary_count(const cg_vocab_t *v)
{
    return v ? v->n_vocabs : 0;
}

const char *cg_vocab_vocabulary_name(const cg_vocab_t *v, size_t i)
{
    return v && i < v->n_vocabs ? v->vocabs[i].name : NULL;
}

int cg_vocab_lookup(const cg_vocab_t *v, cg_slice_t vocabulary_id, cg_slice_t code,
                    cg_vocab_hit_t *hit)
{
    if (hit)
        memset(hit, 0, sizeof(*hit));
    if (!v || !vocabulary_id.ptr || (code.len && !code.ptr))
        return 0;
    int vi = find_vocab(v, vocabulary_id);
    if (vi < 0)
        return 0;
    const ventry_t *e = find_entry(v, vi, code.ptr, code.len, key_hash(vi, code.ptr, code.len));
    if (!e)
        return 0;
    if (hit) {
        hit->concept_id = e->standard_id;
        hit->source_concept_id = e->concept_id;
        hit->domain = e->domain ? v->domains[e->domain].dom : CG_VOCAB_DOMAIN_OTHER;
        hit->domain_id = e->domain ? v->domains[e->domain].name : NULL;
        hit->flags = e->flags & ~CG_VOCAB__STCM;
    }
    return 1;
}

int32_t cg_vocab_unit(const cg_vocab_t *v, cg_slice_t ucum)
{
    cg_vocab_hit_t hit;
    return cg_vocab_lookup(v, CG_SLICE_LIT("UCUM"), ucum, &hit) ? hit.concept_id : 0;
}

/* ---- for the loaders ---- */

int cg_vocab__has_vocab_id(const cg_vocab_t *v, cg_slice_t name)
{
    return v && find_vocab(v, name) >= 0;
}

void cg_vocab__begin_load(cg_vocab_t *v)
{
    v->gen++;
    memset(&v->last, 0, sizeof(v->last));
}

void cg_vocab__note_set(cg_vocab_t *v, const ventry_t *e, int created, int32_t new_std)
{
    cg_vocab_load_stats_t *st = &v->last;
    st->codes++;
    const vname_t *vn = &v->vocabs[e->vocab];
    if (!created && e->gen != v->gen) { /* an earlier load call's key */
        st->overridden++;
        if (st->n_examples < CG_VOCAB_STATS_EXAMPLES)
            snprintf(st->examples[st->n_examples++], sizeof(st->examples[0]),
                     "%.*s %.*s (was %ld, now %ld)", (int)vn->len, vn->name, (int)e->code_len,
                     e->code, (long)e->standard_id, (long)new_std);
    }
    /* the vocabularies named so far, each once */
    size_t used = strlen(st->vocabularies);
    for (const char *p = st->vocabularies; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == vn->len && !memcmp(p, vn->name, n))
            return;
        p = comma ? comma + 2 : p + n;
    }
    if (used && strcmp(st->vocabularies + used - 3, "...") == 0)
        return;
    size_t need = vn->len + (used ? 2 : 0);
    if (used + need + 4 >= sizeof(st->vocabularies)) {
        snprintf(st->vocabularies + used, sizeof(st->vocabularies) - used, "%s...",
                 used ? ", " : "");
        return;
    }
    snprintf(st->vocabularies + used, sizeof(st->vocabularies) - used, "%s%.*s", used ? ", " : "",
             (int)vn->len, vn->name);
}

void cg_vocab_last_load(const cg_vocab_t *v, cg_vocab_load_stats_t *out)
{
    if (v)
        *out = v->last;
    else
        memset(out, 0, sizeof(*out));
}

/* concept_id -> domain index, for cg_vocab_resolve_domains (open addressing, 0 = empty). */
typedef struct {
    int32_t id;
    uint8_t domain;
} id_domain_t;

void cg_vocab_resolve_domains(cg_vocab_t *v)
{
    if (!v)
        return;
    size_t need = 0;
    for (size_t k = 0; k < v->n_entries; k++)
        need += !v->entries[k].domain && v->entries[k].standard_id;
    if (!need)
        return;
    size_t cap = 1024;
    while (cap < v->n_entries * 2)
        cap *= 2;
    id_domain_t *map = calloc(cap, sizeof(*map));
    if (!map)
        return; /* the domains stay unknown, as without this call */
    for (size_t k = 0; k < v->n_entries; k++) {
        const ventry_t *e = &v->entries[k];
        if (!e->domain || !e->concept_id)
            continue;
        size_t i = ((uint32_t)e->concept_id * 2654435761u) & (cap - 1);
        while (map[i].id && map[i].id != e->concept_id)
            i = (i + 1) & (cap - 1);
        map[i] = (id_domain_t){e->concept_id, e->domain};
    }
    for (size_t k = 0; k < v->n_entries; k++) {
        ventry_t *e = &v->entries[k];
        if (e->domain || !e->standard_id)
            continue;
        size_t i = ((uint32_t)e->standard_id * 2654435761u) & (cap - 1);
        while (map[i].id && map[i].id != e->standard_id)
            i = (i + 1) & (cap - 1);
        if (map[i].id)
            e->domain = map[i].domain;
    }
    free(map);
}

/* Copies up to CG_VOCAB_SHOW_MAX bytes of s for an error text, control bytes as '?'. */
const char *cg_vocab__show(const char *s, size_t n, char buf[CG_VOCAB_SHOW_MAX + 4])
{
    return cg_csv_show(s, n, buf);
}
