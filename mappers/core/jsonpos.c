/* jsonpos.c - positions of jansson values in their source text (cg_jsonpos.h). */
#include "cg_jsonpos.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cg_jsonpos_loc {
    int line;   /* 1-based */
    int column; /* 1-based, in bytes */
} cg_jsonpos_loc_t;

typedef struct entry {
    const json_t *v; /* the value, or the object for a key entry */
    const char *key; /* NULL for a value entry */
    uint32_t offset;
} entry_t;

struct cg_jsonpos {
    const char *text;
    entry_t *slots; /* open addressing on (v, key) */
    size_t cap;
    uint32_t *line_starts;
    size_t n_lines;
};

static size_t hash_ptr(const void *p, const char *key)
{
    uintptr_t h = (uintptr_t)p * 0x9E3779B97F4A7C15ull;
    if (key)
        for (const char *k = key; *k; k++)
            h = (h ^ (unsigned char)*k) * 0x100000001B3ull;
    return (size_t)(h ^ (h >> 29));
}

static int put(cg_jsonpos_t *jp, const json_t *v, const char *key, size_t offset)
{
    size_t i = hash_ptr(v, key) & (jp->cap - 1);
    while (jp->slots[i].v) {
        if (jp->slots[i].v == v && ((!key && !jp->slots[i].key) ||
                                    (key && jp->slots[i].key && !strcmp(key, jp->slots[i].key))))
            return 0;
        i = (i + 1) & (jp->cap - 1);
    }
    jp->slots[i].v = v;
    jp->slots[i].key = key;
    jp->slots[i].offset = (uint32_t)offset;
    return 0;
}

static const entry_t *get(const cg_jsonpos_t *jp, const json_t *v, const char *key)
{
    if (!jp || !v)
        return NULL;
    size_t i = hash_ptr(v, key) & (jp->cap - 1);
    while (jp->slots[i].v) {
        if (jp->slots[i].v == v && ((!key && !jp->slots[i].key) ||
                                    (key && jp->slots[i].key && !strcmp(key, jp->slots[i].key))))
            return &jp->slots[i];
        i = (i + 1) & (jp->cap - 1);
    }
    return NULL;
}

static const char *ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static const char *skip_string(const char *p)
{
    for (p++; *p && *p != '"'; p++)
        if (*p == '\\' && p[1])
            p++;
    return *p ? p + 1 : p;
}

static size_t count_values(const json_t *v)
{
    size_t n = 1;
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) n += 1 + count_values(x);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) n += count_values(x);
    }
    return n;
}

/* Walks the text of value v starting at p; returns the position after it. */
static const char *walk(cg_jsonpos_t *jp, const json_t *v, const char *p, int depth)
{
    p = ws(p);
    if (depth > 512)
        return p;
    if (!json_is_true(v) && !json_is_false(v) && !json_is_null(v))
        put(jp, v, NULL, (size_t)(p - jp->text));
    if (json_is_object(v) && *p == '{') {
        p = ws(p + 1);
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            if (*p != '"')
                break;
            put(jp, v, k, (size_t)(p - jp->text));
            p = ws(skip_string(p));
            if (*p == ':')
                p++;
            p = ws(walk(jp, x, p, depth + 1));
            if (*p == ',')
                p = ws(p + 1);
        }
        return *p == '}' ? p + 1 : p;
    }
    if (json_is_array(v) && *p == '[') {
        p = ws(p + 1);
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            p = ws(walk(jp, x, p, depth + 1));
            if (*p == ',')
                p = ws(p + 1);
        }
        return *p == ']' ? p + 1 : p;
    }
    if (*p == '"')
        return skip_string(p);
    while (*p && !strchr(",}] \t\r\n", *p))
        p++;
    return p;
}

cg_jsonpos_t *cg_jsonpos_build(const char *text, json_t *root)
{
    cg_jsonpos_t *jp = calloc(1, sizeof(*jp));
    if (!jp)
        return NULL;
    jp->text = text;
    size_t n = count_values(root) * 2 + 16, cap = 16;
    while (cap < n)
        cap *= 2;
    jp->cap = cap;
    jp->slots = calloc(cap, sizeof(*jp->slots));
    size_t lines = 1;
    for (const char *s = text; *s; s++)
        lines += *s == '\n';
    jp->line_starts = malloc(lines * sizeof(*jp->line_starts));
    if (!jp->slots || !jp->line_starts) {
        cg_jsonpos_destroy(jp);
        return NULL;
    }
    jp->line_starts[jp->n_lines++] = 0;
    for (const char *s = text; *s; s++)
        if (*s == '\n')
            jp->line_starts[jp->n_lines++] = (uint32_t)(s + 1 - text);
    walk(jp, root, text, 0);
    return jp;
}

static cg_jsonpos_loc_t loc_of(const cg_jsonpos_t *jp, const entry_t *e)
{
    cg_jsonpos_loc_t l = {0, 0};
    if (!e)
        return l;
    size_t lo = 0, hi = jp->n_lines;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (jp->line_starts[mid] <= e->offset)
            lo = mid;
        else
            hi = mid;
    }
    l.line = (int)lo + 1;
    l.column = (int)(e->offset - jp->line_starts[lo]) + 1;
    return l;
}

/* Position of value v (its first character); {0, 0} when unknown. */
static cg_jsonpos_loc_t value_loc(const cg_jsonpos_t *jp, const json_t *v)
{
    return loc_of(jp, get(jp, v, NULL));
}

/* Position of the key of member `key` of object obj; {0, 0} when unknown. */
static cg_jsonpos_loc_t key_loc(const cg_jsonpos_t *jp, const json_t *obj, const char *key)
{
    return loc_of(jp, get(jp, obj, key));
}

void cg_jsonpos_errors_add(cg_jsonpos_errors_t *e, cg_err_t code, const char *file, int line,
                           int column, const char *fmt, va_list ap)
{
    size_t i = e->n++;
    if (i >= e->max || !e->errs)
        return;
    char msg[sizeof(e->errs[i].text)];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    cg_error_set(&e->errs[i], code, file, line, column, "%s", msg);
}

void cg_jsonpos_error(cg_jsonpos_errors_t *e, const cg_jsonpos_t *jp, cg_err_t code,
                      const char *file, const json_t *at, const json_t *obj, const char *key,
                      const char *what, const char *fmt, va_list ap)
{
    size_t i = e->n++;
    if (i >= e->max || !e->errs)
        return;
    cg_jsonpos_loc_t l = value_loc(jp, at);
    if (!l.line && obj && key)
        l = key_loc(jp, obj, key);
    if (!l.line && obj)
        l = value_loc(jp, obj);
    char msg[sizeof(e->errs[i].text)];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    cg_error_set(&e->errs[i], code, file, l.line, l.column, "%s%s", what, msg);
}

void cg_jsonpos_destroy(cg_jsonpos_t *jp)
{
    if (!jp)
        return;
    free(jp->slots);
    free(jp->line_starts);
    free(jp);
}
