/* authority.c - which assigning authority a patient identifier is hashed under (cg_pseudo.h,
 * "Assigning authorities"): the identifier's own, a per-facility default or the facility, each
 * put through the site's alias table. */
#include "cg_pseudo.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    char *from, *to;
    size_t from_len, to_len;
} entry_t;

struct cg_pseudo_authorities {
    entry_t *aliases, *defaults; /* sorted by from (bytes), for bsearch */
    size_t n_aliases, n_defaults;
    cg_pseudo_missing_t missing;
};

static void set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    if (!errstr || !errstr_size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}

static int cmp_bytes(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    return c ? c : (al > bl) - (al < bl);
}

static int cmp_entry(const void *x, const void *y)
{
    const entry_t *a = x, *b = y;
    return cmp_bytes(a->from, a->from_len, b->from, b->from_len);
}

static const entry_t *find(const entry_t *t, size_t n, cg_slice_t key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_bytes(key.ptr, key.len, t[mid].from, t[mid].from_len);
        if (!c)
            return &t[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* A name the hash can frame: non-empty, without NUL (C strings cannot carry one) or 0x1F. */
static int bad_name(const char *s)
{
    return !s || !*s || strchr(s, 0x1F) != NULL;
}

static void free_table(entry_t *t, size_t n)
{
    for (size_t i = 0; t && i < n; i++) {
        free(t[i].from);
        free(t[i].to);
    }
    free(t);
}

void cg_pseudo_authorities_destroy(cg_pseudo_authorities_t *a)
{
    if (!a)
        return;
    free_table(a->aliases, a->n_aliases);
    free_table(a->defaults, a->n_defaults);
    free(a);
}

/* Copies and sorts one table; -1 with the reason on a bad or repeated entry. */
static int load_table(const char *table, const cg_pseudo_pair_t *in, size_t n, entry_t **out,
                      cg_pseudo_authority_bad_t *bad, char *errstr, size_t errstr_size)
{
    const char *what = !strcmp(table, "aliases") ? "an alias" : "a default authority";
    const char *key = !strcmp(table, "aliases") ? "authority" : "sending facility";
    *out = calloc(n ? n : 1, sizeof(**out));
    if (!*out) {
        set_err(errstr, errstr_size, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        int bad_from = bad_name(in[i].from);
        if (bad_from || bad_name(in[i].to)) {
            if (bad)
                *bad = (cg_pseudo_authority_bad_t){table, i};
            if (bad_from)
                set_err(errstr, errstr_size,
                        "pseudonym.authorities.%s: %s names an empty %s or one with the control "
                        "character 0x1F",
                        table, what, key);
            else
                set_err(errstr, errstr_size,
                        "pseudonym.authorities.%s: '%s' maps to an empty authority or one with "
                        "the control character 0x1F",
                        table, in[i].from);
            return -1;
        }
        (*out)[i].from = strdup(in[i].from);
        (*out)[i].to = strdup(in[i].to);
        (*out)[i].from_len = strlen(in[i].from);
        (*out)[i].to_len = strlen(in[i].to);
        if (!(*out)[i].from || !(*out)[i].to) {
            set_err(errstr, errstr_size, "out of memory");
            return -1;
        }
    }
    /* a name twice (tables are small: a site's hospitals) */
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (!strcmp(in[i].from, in[j].from)) {
                if (bad)
                    *bad = (cg_pseudo_authority_bad_t){table, i};
                set_err(errstr, errstr_size, "pseudonym.authorities.%s: '%s' is listed twice",
                        table, in[i].from);
                return -1;
            }
    qsort(*out, n, sizeof(**out), cmp_entry);
    return 0;
}

cg_pseudo_authorities_t *cg_pseudo_authorities_new(const cg_pseudo_authority_opts_t *o,
                                                   cg_pseudo_authority_bad_t *bad, char *errstr,
                                                   size_t errstr_size)
{
    static const cg_pseudo_authority_opts_t none = {0};
    if (!o)
        o = &none;
    if (bad)
        *bad = (cg_pseudo_authority_bad_t){NULL, 0};
    if (o->missing != CG_PSEUDO_MISSING_REFUSE && o->missing != CG_PSEUDO_MISSING_FACILITY) {
        set_err(errstr, errstr_size, "pseudonym.authorities.missing must be refuse or facility");
        return NULL;
    }
    cg_pseudo_authorities_t *a = calloc(1, sizeof(*a));
    if (!a) {
        set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    a->missing = o->missing;
    a->n_aliases = o->n_aliases;
    a->n_defaults = o->n_defaults;
    if (load_table("aliases", o->aliases, o->n_aliases, &a->aliases, bad, errstr, errstr_size) ||
        load_table("defaults", o->defaults, o->n_defaults, &a->defaults, bad, errstr,
                   errstr_size)) {
        cg_pseudo_authorities_destroy(a);
        return NULL;
    }
    /* one step: a chain (A -> B, B -> C) would make the result depend on how often the table
     * is applied; the site writes the final name instead */
    for (size_t i = 0; i < o->n_aliases; i++) {
        const char *to = o->aliases[i].to;
        if (find(a->aliases, a->n_aliases, (cg_slice_t){to, strlen(to)}) &&
            strcmp(to, o->aliases[i].from)) {
            if (bad)
                *bad = (cg_pseudo_authority_bad_t){"aliases", i};
            set_err(errstr, errstr_size,
                    "pseudonym.authorities.aliases: '%s' maps to '%s', which is itself an alias; "
                    "map it to the final name",
                    o->aliases[i].from, to);
            cg_pseudo_authorities_destroy(a);
            return NULL;
        }
    }
    return a;
}

cg_pseudo_missing_t cg_pseudo_authorities_missing(const cg_pseudo_authorities_t *a)
{
    return a ? a->missing : CG_PSEUDO_MISSING_REFUSE;
}

cg_pseudo_authority_from_t cg_pseudo_authority(const cg_pseudo_authorities_t *a,
                                               cg_slice_t authority, cg_slice_t facility,
                                               cg_slice_t *out)
{
    cg_pseudo_authority_from_t from = CG_PSEUDO_AUTH_GIVEN;
    cg_slice_t auth = authority;
    if (!auth.len) {
        const entry_t *d = a && facility.len ? find(a->defaults, a->n_defaults, facility) : NULL;
        if (d) {
            auth = (cg_slice_t){d->to, d->to_len};
            from = CG_PSEUDO_AUTH_DEFAULT;
        } else if (!facility.len) {
            *out = (cg_slice_t){"", 0};
            return CG_PSEUDO_AUTH_NO_FACILITY;
        } else if (cg_pseudo_authorities_missing(a) == CG_PSEUDO_MISSING_FACILITY) {
            auth = facility;
            from = CG_PSEUDO_AUTH_FACILITY;
        } else {
            *out = (cg_slice_t){"", 0};
            return CG_PSEUDO_AUTH_NO_DEFAULT;
        }
    }
    const entry_t *al = a ? find(a->aliases, a->n_aliases, auth) : NULL;
    *out = al ? (cg_slice_t){al->to, al->to_len} : auth;
    return from;
}
