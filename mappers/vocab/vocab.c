/* vocab.c - vocabulary table, project CSV and Athena loaders, coding systems (see cg_vocab.h). */
#include "cg_vocab.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_VOCABS     65535
#define MAX_DOMAINS    255   /* domain index 0 means "unknown" */
#define STR_BLOCK      65536 /* string bump block taken from the arena */
#define CSV_MAX_BYTES  (256u << 20)
#define OMOP_VOCAB_LEN 20 /* concept.vocabulary_id varchar(20) */
#define OMOP_CODE_LEN  50 /* concept.concept_code varchar(50) */
#define SHOW_MAX       60 /* bytes of offending text quoted in an error */

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
};

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

/* Index of the vocabulary name, added when new; -1 when out of memory or too many. */
static int intern_vocab(cg_vocab_t *v, cg_slice_t name)
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

/* Domain index (1..), added when new; 0 when empty, -1 when out of memory or too many. */
static int intern_domain(cg_vocab_t *v, cg_slice_t name)
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

/* The entry for the key, created (zeroed but for the key) when new; *created tells which.
 * NULL when out of memory. */
static ventry_t *upsert(cg_vocab_t *v, int vocab, const char *code, size_t len, int *created)
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
        hit->flags = e->flags;
    }
    return 1;
}

int32_t cg_vocab_unit(const cg_vocab_t *v, cg_slice_t ucum)
{
    cg_vocab_hit_t hit;
    return cg_vocab_lookup(v, CG_SLICE_LIT("UCUM"), ucum, &hit) ? hit.concept_id : 0;
}

/* ---- coding systems ---- */

static const struct {
    const char *name;
    const char *vocab;
} systems[] = {
    /* HL7 v2 table 0396 (and spellings seen in feeds) */
    {"LN", "LOINC"},
    {"LOINC", "LOINC"},
    {"SCT", "SNOMED"},
    {"SNOMED", "SNOMED"},
    {"SNOMEDCT", "SNOMED"},
    {"SNOMED-CT", "SNOMED"},
    /* SNM is strictly the older SNOMED; senders use it for SNOMED CT codes in practice, and an
     * old code simply finds nothing */
    {"SNM", "SNOMED"},
    {"I10", "ICD10"},
    {"ICD10", "ICD10"},
    {"I10C", "ICD10CM"},
    {"ICD10CM", "ICD10CM"},
    {"ICD-10-CM", "ICD10CM"},
    {"I10P", "ICD10PCS"},
    {"ICD10PCS", "ICD10PCS"},
    /* OMOP has no WHO ICD-9: its codes are read as ICD-9-CM, which shares them */
    {"I9", "ICD9CM"},
    {"I9C", "ICD9CM"},
    {"I9CDX", "ICD9CM"},
    {"ICD9CM", "ICD9CM"},
    {"I9CP", "ICD9Proc"},
    {"RXNORM", "RxNorm"},
    {"CVX", "CVX"},
    {"NDC", "NDC"},
    {"UCUM", "UCUM"},
    {"C4", "CPT4"},
    {"CPT4", "CPT4"},
    {"HCPCS", "HCPCS"},
    {"HL70001", "HL7_0001"},
    {"HL70004", "HL7_0004"},
    /* CDA / FHIR codeSystem OIDs */
    {"2.16.840.1.113883.6.1", "LOINC"},
    {"2.16.840.1.113883.6.96", "SNOMED"},
    {"2.16.840.1.113883.6.90", "ICD10CM"},
    {"2.16.840.1.113883.6.3", "ICD10"},
    {"2.16.840.1.113883.6.4", "ICD10PCS"},
    {"2.16.840.1.113883.6.88", "RxNorm"},
    {"2.16.840.1.113883.12.292", "CVX"},
    {"2.16.840.1.113883.6.8", "UCUM"},
    {"2.16.840.1.113883.6.69", "NDC"},
    {"2.16.840.1.113883.6.103", "ICD9CM"},
    {"2.16.840.1.113883.6.104", "ICD9Proc"},
    {"2.16.840.1.113883.6.12", "CPT4"},
    {"2.16.840.1.113883.6.285", "HCPCS"},
    {"2.16.840.1.113883.12.1", "HL7_0001"}, /* v2 table 0001 */
    {"2.16.840.1.113883.12.4", "HL7_0004"}, /* v2 table 0004 */
    {"2.16.840.1.113883.5.1", "HL7_0001"},  /* CDA AdministrativeGender: F, M as in 0001 */
    {"2.16.840.1.113883.5.4", "HL7_ActCode"},
};

const char *cg_vocab_system(cg_slice_t name)
{
    if (!name.ptr)
        return NULL;
    while (name.len && isspace((unsigned char)name.ptr[0])) {
        name.ptr++;
        name.len--;
    }
    while (name.len && isspace((unsigned char)name.ptr[name.len - 1]))
        name.len--;
    if (name.len > 8 && strncasecmp(name.ptr, "urn:oid:", 8) == 0) {
        name.ptr += 8;
        name.len -= 8;
    }
    for (size_t i = 0; i < sizeof(systems) / sizeof(systems[0]); i++)
        if (strlen(systems[i].name) == name.len &&
            strncasecmp(systems[i].name, name.ptr, name.len) == 0)
            return systems[i].vocab;
    return NULL;
}

int cg_vocab_lookup_system(const cg_vocab_t *v, cg_slice_t system, cg_slice_t code,
                           cg_vocab_hit_t *hit)
{
    const char *voc = cg_vocab_system(system);
    cg_slice_t vs = voc ? (cg_slice_t){voc, strlen(voc)} : system;
    return cg_vocab_lookup(v, vs, code, hit);
}

/* ---- shared helpers ---- */

/* Decimal 0..INT32_MAX, digits only. */
static int parse_id(const char *s, size_t n, int32_t *out)
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

/* Copies up to SHOW_MAX bytes of s for an error text, control bytes as '?'. */
static const char *show(const char *s, size_t n, char buf[SHOW_MAX + 4])
{
    size_t m = n > SHOW_MAX ? SHOW_MAX : n;
    for (size_t i = 0; i < m; i++)
        buf[i] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
    if (m < n) {
        memcpy(buf + m, "...", 4);
    } else {
        buf[m] = '\0';
    }
    return buf;
}

/* ---- project CSV tables (RFC 4180) ---- */

enum { COL_VOCAB, COL_CODE, COL_ID, COL_DOMAIN, COL_NAME, COL_STD, COL_STD_NAME, COL__COUNT };
static const char *const csv_cols[COL__COUNT] = {
    "vocabulary_id", "concept_code",        "concept_id",           "domain_id",
    "concept_name",  "standard_concept_id", "standard_concept_name"};
#define CSV_REQUIRED   ((1u << COL_VOCAB) | (1u << COL_CODE) | (1u << COL_ID) | (1u << COL_DOMAIN))
#define CSV_MAX_FIELDS 16

typedef struct csv_field {
    char *p; /* unescaped in place */
    size_t len;
    int line, col;
} csv_field_t;

typedef struct csv_ctx {
    cg_vocab_t *v;
    const char *path;
    cg_error_t *errs;
    size_t errs_cap;
    size_t n_errs;
    cg_err_t first;
    char *buf;
    size_t len, pos;
    int line;          /* current line, 1-based */
    size_t line_start; /* offset of the current line */
} csv_ctx_t;

static void csv_err(csv_ctx_t *c, cg_err_t code, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void csv_err(csv_ctx_t *c, cg_err_t code, int line, int col, const char *fmt, ...)
{
    if (c->first == CG_OK)
        c->first = code;
    if (c->n_errs < c->errs_cap) {
        char text[sizeof(c->errs[0].text)];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        cg_error_set(&c->errs[c->n_errs], code, c->path, line, col, "%s", text);
    }
    c->n_errs++;
}

/* Skips to just after the end of the current line (error resync). */
static void csv_skip_line(csv_ctx_t *c)
{
    char *nl = memchr(c->buf + c->pos, '\n', c->len - c->pos);
    c->pos = nl ? (size_t)(nl - c->buf) + 1 : c->len;
    c->line++;
    c->line_start = c->pos;
}

/* Parses one record. Returns 1 with fields, 0 at end of input, -1 after reporting a syntax error
 * (the rest of that line is skipped), -2 when the file cannot be resynchronised. */
static int csv_record(csv_ctx_t *c, csv_field_t *f, size_t *nf, int *rec_line)
{
    *nf = 0;
    *rec_line = c->line;
    if (c->pos >= c->len)
        return 0;
    for (;;) {
        if (*nf == CSV_MAX_FIELDS) {
            csv_err(c, CG_ERR_CONFIG, c->line, (int)(c->pos - c->line_start) + 1,
                    "more than %d fields", CSV_MAX_FIELDS);
            csv_skip_line(c);
            return -1;
        }
        csv_field_t *fd = &f[(*nf)++];
        fd->line = c->line;
        fd->col = (int)(c->pos - c->line_start) + 1;
        fd->p = c->buf + c->pos;
        fd->len = 0;
        if (c->pos < c->len && c->buf[c->pos] == '"') {
            char *out = fd->p;
            size_t i = c->pos + 1;
            int closed = 0;
            while (i < c->len) {
                char ch = c->buf[i];
                if (ch == '"') {
                    if (i + 1 < c->len && c->buf[i + 1] == '"') {
                        *out++ = '"';
                        i += 2;
                        continue;
                    }
                    i++;
                    closed = 1;
                    break;
                }
                if (ch == '\n') {
                    c->line++;
                    c->line_start = i + 1;
                }
                *out++ = ch;
                i++;
            }
            if (!closed) {
                csv_err(c, CG_ERR_CONFIG, fd->line, fd->col,
                        "quoted field never closed (the rest of the file is inside it)");
                c->pos = c->len;
                return -2;
            }
            fd->len = (size_t)(out - fd->p);
            c->pos = i;
            if (c->pos < c->len && c->buf[c->pos] != ',' && c->buf[c->pos] != '\n' &&
                !(c->buf[c->pos] == '\r' && c->pos + 1 < c->len && c->buf[c->pos + 1] == '\n')) {
                char sb[SHOW_MAX + 4];
                size_t rest = c->len - c->pos;
                const char *nl = memchr(c->buf + c->pos, '\n', rest);
                size_t n = nl ? (size_t)(nl - (c->buf + c->pos)) : rest;
                csv_err(c, CG_ERR_CONFIG, c->line, (int)(c->pos - c->line_start) + 1,
                        "text after a closing quote: '%s'", show(c->buf + c->pos, n, sb));
                csv_skip_line(c);
                return -1;
            }
        } else {
            size_t i = c->pos;
            while (i < c->len && c->buf[i] != ',' && c->buf[i] != '\n') {
                if (c->buf[i] == '"') {
                    char sb[SHOW_MAX + 4];
                    const char *nl = memchr(c->buf + c->pos, '\n', c->len - c->pos);
                    size_t n = nl ? (size_t)(nl - (c->buf + c->pos)) : c->len - c->pos;
                    csv_err(c, CG_ERR_CONFIG, c->line, (int)(i - c->line_start) + 1,
                            "quote inside an unquoted field (quote the whole field and double "
                            "the quote): '%s'",
                            show(c->buf + c->pos, n, sb));
                    csv_skip_line(c);
                    return -1;
                }
                i++;
            }
            fd->len = i - c->pos;
            if (fd->len && i < c->len && c->buf[i] == '\n' && fd->p[fd->len - 1] == '\r')
                fd->len--; /* CRLF line end */
            c->pos = i;
        }
        if (c->pos >= c->len)
            return 1;
        if (c->buf[c->pos] == ',') {
            c->pos++;
            continue;
        }
        /* line end ("\r\n" already stripped from unquoted fields) */
        if (c->buf[c->pos] == '\r')
            c->pos++;
        c->pos++;
        c->line++;
        c->line_start = c->pos;
        return 1;
    }
}

static int is_blank_record(const csv_field_t *f, size_t nf)
{
    return nf == 1 && f[0].len == 0;
}

static int has_edge_space(const csv_field_t *f)
{
    return f->len && (isspace((unsigned char)f->p[0]) || isspace((unsigned char)f->p[f->len - 1]));
}

static cg_err_t load_csv_file(cg_vocab_t *v, const char *path, csv_ctx_t *c)
{
    c->path = path;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        csv_err(c, CG_ERR_IO, 0, 0, "cannot open: %s", strerror(errno));
        return CG_ERR_IO;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= CSV_MAX_BYTES) {
                free(buf);
                fclose(fp);
                csv_err(c, CG_ERR_CONFIG, 0, 0,
                        "larger than %u MiB: load big vocabularies in Athena format",
                        CSV_MAX_BYTES >> 20);
                return CG_ERR_CONFIG;
            }
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(fp);
                csv_err(c, CG_ERR_NOMEM, 0, 0, "out of memory");
                return CG_ERR_NOMEM;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, fp);
        len += r;
        if (r == 0)
            break;
    }
    int rd_err = ferror(fp);
    fclose(fp);
    if (rd_err) {
        free(buf);
        csv_err(c, CG_ERR_IO, 0, 0, "read error");
        return CG_ERR_IO;
    }
    c->buf = buf;
    c->len = len;
    c->pos = 0;
    c->line = 1;
    c->line_start = 0;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
        c->pos = c->line_start = 3; /* UTF-8 BOM (column counts start after it) */

    csv_field_t f[CSV_MAX_FIELDS];
    size_t nf;
    int rec_line, r;
    /* header */
    do {
        r = csv_record(c, f, &nf, &rec_line);
    } while (r == 1 && is_blank_record(f, nf));
    if (r != 1) {
        if (r == 0)
            csv_err(c, CG_ERR_CONFIG, 1, 1, "empty file: a header row is required (%s,%s,%s,%s)",
                    csv_cols[0], csv_cols[1], csv_cols[2], csv_cols[3]);
        free(buf);
        return CG_ERR_CONFIG;
    }
    int colmap[CSV_MAX_FIELDS];
    unsigned seen = 0;
    int header_ok = 1;
    for (size_t i = 0; i < nf; i++) {
        colmap[i] = -1;
        for (int k = 0; k < COL__COUNT; k++)
            if (f[i].len == strlen(csv_cols[k]) && memcmp(f[i].p, csv_cols[k], f[i].len) == 0)
                colmap[i] = k;
        char sb[SHOW_MAX + 4];
        if (colmap[i] < 0) {
            csv_err(c, CG_ERR_CONFIG, f[i].line, f[i].col,
                    "unknown column '%s' (expected vocabulary_id, concept_code, concept_id, "
                    "domain_id, concept_name, standard_concept_id, standard_concept_name)",
                    show(f[i].p, f[i].len, sb));
            header_ok = 0;
        } else if (seen & (1u << colmap[i])) {
            csv_err(c, CG_ERR_CONFIG, f[i].line, f[i].col, "column '%s' appears twice",
                    csv_cols[colmap[i]]);
            header_ok = 0;
        } else {
            seen |= 1u << colmap[i];
        }
    }
    for (int k = 0; k < COL__COUNT; k++)
        if ((CSV_REQUIRED & (1u << k)) && !(seen & (1u << k))) {
            csv_err(c, CG_ERR_CONFIG, rec_line, 1, "header lacks the column '%s'", csv_cols[k]);
            header_ok = 0;
        }
    if (!header_ok) {
        free(buf);
        return CG_ERR_CONFIG;
    }
    size_t ncols = nf;

    while ((r = csv_record(c, f, &nf, &rec_line)) != 0) {
        if (r == -2)
            break;
        if (r < 0 || is_blank_record(f, nf))
            continue;
        if (nf != ncols) {
            csv_err(c, CG_ERR_CONFIG, rec_line, nf > ncols ? f[ncols].col : 1,
                    "%zu fields where the header has %zu", nf, ncols);
            continue;
        }
        csv_field_t *col[COL__COUNT] = {0};
        for (size_t i = 0; i < nf; i++)
            col[colmap[i]] = &f[i];
        char sb[SHOW_MAX + 4];
        csv_field_t *fv = col[COL_VOCAB], *fc = col[COL_CODE], *fi = col[COL_ID],
                    *fdm = col[COL_DOMAIN], *fs = col[COL_STD];
        if (!fv->len || fv->len > OMOP_VOCAB_LEN || has_edge_space(fv)) {
            csv_err(c, CG_ERR_CONFIG, fv->line, fv->col,
                    "vocabulary_id must be 1-%d characters without surrounding spaces: '%s'",
                    OMOP_VOCAB_LEN, show(fv->p, fv->len, sb));
            continue;
        }
        if (!fc->len || fc->len > OMOP_CODE_LEN || has_edge_space(fc)) {
            csv_err(c, CG_ERR_CONFIG, fc->line, fc->col,
                    "concept_code must be 1-%d characters without surrounding spaces: '%s'",
                    OMOP_CODE_LEN, show(fc->p, fc->len, sb));
            continue;
        }
        int32_t id = 0, std = 0;
        if (parse_id(fi->p, fi->len, &id) != 0) {
            csv_err(c, CG_ERR_CONFIG, fi->line, fi->col,
                    "concept_id is not an integer in 0..2147483647: '%s'",
                    show(fi->p, fi->len, sb));
            continue;
        }
        cg_slice_t dom_s = {fdm->p, fdm->len};
        if (cg_vocab_domain_parse(dom_s) == CG_VOCAB_DOMAIN_OTHER) {
            csv_err(c, CG_ERR_CONFIG, fdm->line, fdm->col,
                    "unknown domain_id '%s' (OMOP spelling: Condition, Measurement, "
                    "Observation, Drug, Procedure, Device, Visit, Gender, Race, Ethnicity, Unit, "
                    "Type Concept, Meas Value, Meas Value Operator, Route, Spec Anatomic Site, "
                    "Metadata)",
                    show(fdm->p, fdm->len, sb));
            continue;
        }
        if (fs && fs->len) {
            if (parse_id(fs->p, fs->len, &std) != 0) {
                csv_err(c, CG_ERR_CONFIG, fs->line, fs->col,
                        "standard_concept_id is not an integer in 0..2147483647: '%s'",
                        show(fs->p, fs->len, sb));
                continue;
            }
        } else {
            std = id; /* no column or empty: the concept is its own standard */
        }
        if (id == 0 && std == 0) {
            csv_err(c, CG_ERR_CONFIG, fi->line, fi->col,
                    "concept_id and standard_concept_id are both 0: the row maps to nothing");
            continue;
        }
        int vi = intern_vocab(v, (cg_slice_t){fv->p, fv->len});
        int di = intern_domain(v, dom_s);
        int created = 0;
        ventry_t *e = vi < 0 || di < 0 ? NULL : upsert(v, vi, fc->p, fc->len, &created);
        if (!e) {
            csv_err(c, CG_ERR_NOMEM, rec_line, 1, "out of memory");
            break;
        }
        if (!created && e->gen == v->gen) {
            char sb2[SHOW_MAX + 4];
            csv_err(c, CG_ERR_CONFIG, fc->line, fc->col,
                    "duplicate code '%s' in vocabulary '%s' (already defined in this load)",
                    show(fc->p, fc->len, sb), show(fv->p, fv->len, sb2));
            continue;
        }
        e->concept_id = id;
        e->standard_id = std;
        e->domain = (uint8_t)di;
        e->flags = 0;
        e->gen = v->gen;
    }
    free(buf);
    c->buf = NULL;
    return c->first;
}

static void csv_ctx_init(csv_ctx_t *c, cg_vocab_t *v, cg_error_t *errs, size_t errs_cap)
{
    memset(c, 0, sizeof(*c));
    c->v = v;
    c->errs = errs;
    c->errs_cap = errs ? errs_cap : 0;
}

cg_err_t cg_vocab_load_csv(cg_vocab_t *v, const char *path, cg_error_t *errs, size_t errs_cap,
                           size_t *n_errs)
{
    if (n_errs)
        *n_errs = 0;
    if (!v || !path)
        return CG_ERR_INVALID_ARG;
    csv_ctx_t c;
    csv_ctx_init(&c, v, errs, errs_cap);
    c.path = path;
    v->gen++;
    load_csv_file(v, path, &c);
    if (n_errs)
        *n_errs = c.n_errs;
    return c.first;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

cg_err_t cg_vocab_load_csv_dir(cg_vocab_t *v, const char *dir, cg_error_t *errs, size_t errs_cap,
                               size_t *n_errs)
{
    if (n_errs)
        *n_errs = 0;
    if (!v || !dir)
        return CG_ERR_INVALID_ARG;
    csv_ctx_t c;
    csv_ctx_init(&c, v, errs, errs_cap);
    c.path = dir;
    DIR *d = opendir(dir);
    if (!d) {
        csv_err(&c, CG_ERR_IO, 0, 0, "cannot open folder: %s", strerror(errno));
        if (n_errs)
            *n_errs = c.n_errs;
        return CG_ERR_IO;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    cg_err_t rc = CG_OK;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l < 5 || strcmp(de->d_name + l - 4, ".csv") != 0 || de->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, cap * sizeof(*nn));
            if (!nn) {
                rc = CG_ERR_NOMEM;
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = CG_ERR_NOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (rc == CG_OK && n)
        qsort(names, n, sizeof(*names), cmp_str);
    v->gen++;
    for (size_t i = 0; rc == CG_OK && i < n; i++) {
        size_t pl = strlen(dir) + strlen(names[i]) + 2;
        char *path = malloc(pl);
        if (!path) {
            rc = CG_ERR_NOMEM;
            break;
        }
        snprintf(path, pl, "%s/%s", dir, names[i]);
        /* cg_error_t copies the path, so the buffer can go after the file */
        load_csv_file(v, path, &c);
        free(path);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (rc != CG_OK)
        csv_err(&c, rc, 0, 0, "out of memory");
    if (n_errs)
        *n_errs = c.n_errs;
    return c.first;
}

/* ---- OHDSI Athena (tab-separated, no quoting) ---- */

/* concept_id -> entry index (or -> domain index for pending targets), open addressing. */
typedef struct idmap {
    int32_t *keys; /* -1 = empty */
    uint32_t *vals;
    size_t cap, n;
} idmap_t;

static void idmap_free(idmap_t *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

static size_t id_slot(int32_t id, size_t mask)
{
    uint64_t h = (uint64_t)(uint32_t)id * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(h >> 32) & mask;
}

static uint32_t *idmap_get(const idmap_t *m, int32_t id)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = id_slot(id, mask);; i = (i + 1) & mask) {
        if (m->keys[i] == id)
            return &m->vals[i];
        if (m->keys[i] == -1)
            return NULL;
    }
}

static int idmap_put(idmap_t *m, int32_t id, uint32_t val)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        int32_t *nk = malloc(cap * sizeof(*nk));
        uint32_t *nv = malloc(cap * sizeof(*nv));
        if (!nk || !nv) {
            free(nk);
            free(nv);
            return -1;
        }
        memset(nk, 0xFF, cap * sizeof(*nk));
        for (size_t k = 0; k < m->cap; k++) {
            if (m->keys[k] == -1)
                continue;
            size_t i = id_slot(m->keys[k], cap - 1);
            while (nk[i] != -1)
                i = (i + 1) & (cap - 1);
            nk[i] = m->keys[k];
            nv[i] = m->vals[k];
        }
        free(m->keys);
        free(m->vals);
        m->keys = nk;
        m->vals = nv;
        m->cap = cap;
    }
    size_t mask = m->cap - 1, i = id_slot(id, mask);
    while (m->keys[i] != -1 && m->keys[i] != id)
        i = (i + 1) & mask;
    if (m->keys[i] == -1) {
        m->keys[i] = id;
        m->n++;
    }
    m->vals[i] = val;
    return 0;
}

#define TSV_MAX_FIELDS 32

typedef struct tsv {
    FILE *fp;
    char path[4096];
    char *line;
    size_t line_cap;
    size_t len;
    long lineno;
    cg_slice_t f[TSV_MAX_FIELDS];
    size_t nf;
} tsv_t;

static cg_err_t tsv_open(tsv_t *t, const char *dir, const char *name, cg_error_t *err)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->path, sizeof(t->path), "%s/%s", dir, name);
    t->fp = fopen(t->path, "rb");
    if (!t->fp)
        return cg_error_set(err, CG_ERR_IO, t->path, 0, 0, "cannot open: %s", strerror(errno));
    return CG_OK;
}

static void tsv_close(tsv_t *t)
{
    if (t->fp)
        fclose(t->fp);
    free(t->line);
    t->fp = NULL;
    t->line = NULL;
}

/* Next line split at tabs: 1, or 0 at end of file, or -1 on a read error. */
static int tsv_next(tsv_t *t)
{
    ssize_t n = getline(&t->line, &t->line_cap, t->fp);
    if (n < 0)
        return ferror(t->fp) ? -1 : 0;
    t->lineno++;
    size_t len = (size_t)n;
    if (len && t->line[len - 1] == '\n')
        len--;
    if (len && t->line[len - 1] == '\r')
        len--;
    t->len = len;
    t->nf = 0;
    const char *p = t->line, *end = t->line + len;
    for (;;) {
        const char *tab = memchr(p, '\t', (size_t)(end - p));
        const char *fe = tab ? tab : end;
        if (t->nf < TSV_MAX_FIELDS)
            t->f[t->nf] = (cg_slice_t){p, (size_t)(fe - p)};
        t->nf++;
        if (!tab)
            break;
        p = tab + 1;
    }
    return 1;
}

static int tsv_col(const tsv_t *t, size_t i)
{
    size_t col = 1;
    for (size_t k = 0; k < i && k < t->nf && k < TSV_MAX_FIELDS; k++)
        col += t->f[k].len + 1;
    return (int)col;
}

/* Header: the index of each wanted column (case-insensitive; Athena spells them lowercase). */
static cg_err_t tsv_header(tsv_t *t, const char *const *want, size_t n_want, int *idx,
                           cg_error_t *err)
{
    int r = tsv_next(t);
    if (r <= 0)
        return cg_error_set(err, r < 0 ? CG_ERR_IO : CG_ERR_CONFIG, t->path, 1, 1,
                            r < 0 ? "read error" : "empty file: a header row is required");
    if (t->len >= 3 && memcmp(t->line, "\xEF\xBB\xBF", 3) == 0) {
        t->f[0].ptr += 3;
        t->f[0].len -= 3;
    }
    for (size_t k = 0; k < n_want; k++) {
        idx[k] = -1;
        for (size_t i = 0; i < t->nf && i < TSV_MAX_FIELDS; i++)
            if (t->f[i].len == strlen(want[k]) &&
                strncasecmp(t->f[i].ptr, want[k], t->f[i].len) == 0)
                idx[k] = (int)i;
        if (idx[k] < 0) {
            char sb[SHOW_MAX + 4];
            return cg_error_set(err, CG_ERR_CONFIG, t->path, 1, 1,
                                "header lacks the column '%s' (is this a tab-separated Athena "
                                "file?): '%s'",
                                want[k], show(t->line, t->len, sb));
        }
    }
    return CG_OK;
}

static int want_vocab(cg_slice_t voc, const char *const *list, size_t n)
{
    if (!list || !n)
        return 1;
    for (size_t i = 0; i < n; i++)
        if (list[i] && strlen(list[i]) == voc.len && memcmp(list[i], voc.ptr, voc.len) == 0)
            return 1;
    return 0;
}

enum { AC_ID, AC_DOMAIN, AC_VOCAB, AC_STD, AC_CODE, AC_INVALID, AC__COUNT };
static const char *const athena_concept_cols[AC__COUNT] = {"concept_id",    "domain_id",
                                                           "vocabulary_id", "standard_concept",
                                                           "concept_code",  "invalid_reason"};
enum { AR_ID1, AR_ID2, AR_REL, AR_INVALID, AR__COUNT };
static const char *const athena_rel_cols[AR__COUNT] = {"concept_id_1", "concept_id_2",
                                                       "relationship_id", "invalid_reason"};

static cg_err_t tsv_field_count(tsv_t *t, size_t ncols, cg_error_t *err)
{
    if (t->nf == ncols)
        return CG_OK;
    return cg_error_set(
        err, CG_ERR_CONFIG, t->path, (int)t->lineno, tsv_col(t, t->nf < ncols ? t->nf : ncols),
        "%zu tab-separated fields where the header has %zu (truncated download?)", t->nf, ncols);
}

static cg_err_t bad_id(tsv_t *t, size_t i, cg_error_t *err)
{
    char sb[SHOW_MAX + 4];
    return cg_error_set(err, CG_ERR_CONFIG, t->path, (int)t->lineno, tsv_col(t, i),
                        "not a concept id: '%s'", show(t->f[i].ptr, t->f[i].len, sb));
}

/* Pass 1: key the codes of the wanted vocabularies; ids maps concept_id -> entry index. */
static cg_err_t athena_concepts(cg_vocab_t *v, const char *dir, const char *const *vocabs,
                                size_t n_vocabs, idmap_t *ids, cg_error_t *err)
{
    tsv_t t;
    int idx[AC__COUNT];
    cg_err_t rc = tsv_open(&t, dir, "CONCEPT.csv", err);
    if (rc == CG_OK)
        rc = tsv_header(&t, athena_concept_cols, AC__COUNT, idx, err);
    size_t ncols = t.nf;
    int r = 0;
    while (rc == CG_OK && (r = tsv_next(&t)) == 1) {
        if (!t.len)
            continue;
        if ((rc = tsv_field_count(&t, ncols, err)) != CG_OK)
            break;
        cg_slice_t voc = t.f[idx[AC_VOCAB]];
        if (!want_vocab(voc, vocabs, n_vocabs))
            continue;
        int32_t id;
        if (parse_id(t.f[idx[AC_ID]].ptr, t.f[idx[AC_ID]].len, &id) != 0) {
            rc = bad_id(&t, (size_t)idx[AC_ID], err);
            break;
        }
        cg_slice_t code = t.f[idx[AC_CODE]], std = t.f[idx[AC_STD]];
        int invalid = t.f[idx[AC_INVALID]].len != 0;
        int standard = !invalid && std.len == 1 && std.ptr[0] == 'S';
        int vi = intern_vocab(v, voc);
        int di = intern_domain(v, t.f[idx[AC_DOMAIN]]);
        int created = 0;
        ventry_t *e = vi < 0 || di < 0 ? NULL : upsert(v, vi, code.ptr, code.len, &created);
        if (!e) {
            rc = cg_error_set(err, CG_ERR_NOMEM, t.path, (int)t.lineno, 1, "out of memory");
            break;
        }
        /* a code listed twice in one release: a valid concept beats a deprecated one */
        if (!created && e->gen == v->gen && (invalid || !(e->flags & CG_VOCAB_INVALID)))
            continue;
        e->concept_id = id;
        e->standard_id = standard ? id : 0;
        e->domain = (uint8_t)di;
        e->flags = invalid ? CG_VOCAB_INVALID : 0;
        e->gen = v->gen;
        if (idmap_put(ids, id, (uint32_t)(e - v->entries)) != 0) {
            rc = cg_error_set(err, CG_ERR_NOMEM, t.path, (int)t.lineno, 1, "out of memory");
            break;
        }
    }
    if (rc == CG_OK && r < 0)
        rc = cg_error_set(err, CG_ERR_IO, t.path, (int)t.lineno, 0, "read error");
    tsv_close(&t);
    return rc;
}

static ventry_t *entry_of(cg_vocab_t *v, const idmap_t *ids, int32_t id)
{
    uint32_t *ix = idmap_get(ids, id);
    if (!ix)
        return NULL;
    ventry_t *e = &v->entries[*ix];
    return e->concept_id == id && e->gen == v->gen ? e : NULL; /* not replaced since */
}

/* Pass 2: valid "Maps to" rows of loaded codes give their standard concept. */
static cg_err_t athena_maps_to(cg_vocab_t *v, const char *dir, const idmap_t *ids, cg_error_t *err)
{
    tsv_t t;
    int idx[AR__COUNT];
    cg_err_t rc = tsv_open(&t, dir, "CONCEPT_RELATIONSHIP.csv", err);
    if (rc == CG_OK)
        rc = tsv_header(&t, athena_rel_cols, AR__COUNT, idx, err);
    size_t ncols = t.nf;
    int r = 0;
    while (rc == CG_OK && (r = tsv_next(&t)) == 1) {
        if (!t.len)
            continue;
        if ((rc = tsv_field_count(&t, ncols, err)) != CG_OK)
            break;
        cg_slice_t rel = t.f[idx[AR_REL]];
        if (rel.len != 7 || memcmp(rel.ptr, "Maps to", 7) != 0 || t.f[idx[AR_INVALID]].len)
            continue;
        int32_t id1, id2;
        if (parse_id(t.f[idx[AR_ID1]].ptr, t.f[idx[AR_ID1]].len, &id1) != 0) {
            rc = bad_id(&t, (size_t)idx[AR_ID1], err);
            break;
        }
        ventry_t *e = entry_of(v, ids, id1);
        if (!e)
            continue;
        if (parse_id(t.f[idx[AR_ID2]].ptr, t.f[idx[AR_ID2]].len, &id2) != 0) {
            rc = bad_id(&t, (size_t)idx[AR_ID2], err);
            break;
        }
        if (id2 == id1 || e->standard_id == id1)
            continue; /* a standard concept maps to itself */
        if (e->standard_id == 0) {
            e->standard_id = id2;
        } else if (e->standard_id != id2) {
            e->flags |= CG_VOCAB_MULTI_MAP;
            if (id2 < e->standard_id) /* the same choice whatever the file order */
                e->standard_id = id2;
        }
    }
    if (rc == CG_OK && r < 0)
        rc = cg_error_set(err, CG_ERR_IO, t.path, (int)t.lineno, 0, "read error");
    tsv_close(&t);
    return rc;
}

/* Pass 3 (only when some targets lie outside the loaded vocabularies): their domains. */
static cg_err_t athena_target_domains(cg_vocab_t *v, const char *dir, idmap_t *pending,
                                      cg_error_t *err)
{
    tsv_t t;
    int idx[AC__COUNT];
    cg_err_t rc = tsv_open(&t, dir, "CONCEPT.csv", err);
    if (rc == CG_OK)
        rc = tsv_header(&t, athena_concept_cols, AC__COUNT, idx, err);
    size_t ncols = t.nf;
    int r = 0;
    while (rc == CG_OK && (r = tsv_next(&t)) == 1) {
        if (!t.len || t.nf != ncols)
            continue; /* pass 1 already checked the file */
        int32_t id;
        if (parse_id(t.f[idx[AC_ID]].ptr, t.f[idx[AC_ID]].len, &id) != 0)
            continue;
        uint32_t *dom = idmap_get(pending, id);
        if (!dom)
            continue;
        int di = intern_domain(v, t.f[idx[AC_DOMAIN]]);
        if (di < 0) {
            rc = cg_error_set(err, CG_ERR_NOMEM, t.path, (int)t.lineno, 1, "out of memory");
            break;
        }
        *dom = (uint32_t)di;
    }
    if (rc == CG_OK && r < 0)
        rc = cg_error_set(err, CG_ERR_IO, t.path, (int)t.lineno, 0, "read error");
    tsv_close(&t);
    return rc;
}

cg_err_t cg_vocab_load_athena(cg_vocab_t *v, const char *dir, const char *const *vocabularies,
                              size_t n, cg_error_t *err)
{
    if (!v || !dir)
        return cg_error_set(err, CG_ERR_INVALID_ARG, "", 0, 0, "no vocabulary or folder");
    v->gen++;
    idmap_t ids = {0}, pending = {0};
    cg_err_t rc = athena_concepts(v, dir, vocabularies, n, &ids, err);
    if (rc == CG_OK)
        rc = athena_maps_to(v, dir, &ids, err);
    /* the domain of a mapped code is its standard concept's */
    size_t n_pending = 0;
    for (size_t k = 0; rc == CG_OK && k < v->n_entries; k++) {
        ventry_t *e = &v->entries[k];
        if (e->gen != v->gen || !e->standard_id || e->standard_id == e->concept_id)
            continue;
        ventry_t *s = entry_of(v, &ids, e->standard_id);
        if (s) {
            e->domain = s->domain;
        } else if (!idmap_get(&pending, e->standard_id)) {
            if (idmap_put(&pending, e->standard_id, UINT32_MAX) != 0)
                rc = cg_error_set(err, CG_ERR_NOMEM, dir, 0, 0, "out of memory");
            n_pending++;
        }
    }
    if (rc == CG_OK && n_pending) {
        rc = athena_target_domains(v, dir, &pending, err);
        for (size_t k = 0; rc == CG_OK && k < v->n_entries; k++) {
            ventry_t *e = &v->entries[k];
            if (e->gen != v->gen || !e->standard_id || e->standard_id == e->concept_id)
                continue;
            uint32_t *dom = idmap_get(&pending, e->standard_id);
            if (dom && *dom != UINT32_MAX)
                e->domain = (uint8_t)*dom; /* else the target is missing: keep its own */
        }
    }
    idmap_free(&ids);
    idmap_free(&pending);
    return rc;
}
