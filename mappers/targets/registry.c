/* registry.c - the targets records are written in (cg_target.h), one line each, and the entry
 * points that dispatch to a row's target (cg_row.h). */
#include "target_impl.h"

#include <string.h>

static const cg_target_t *const targets[] = {
    &cg_target_omop_cdm54,
    &cg_target_cohortgate,
};

#define N_TARGETS (sizeof(targets) / sizeof(targets[0]))

const cg_target_t *cg_target_at(size_t i)
{
    return i < N_TARGETS ? targets[i] : NULL;
}

const cg_target_t *cg_target_find(const char *name)
{
    for (size_t i = 0; name && i < N_TARGETS; i++)
        if (!strcmp(targets[i]->name, name))
            return targets[i];
    return NULL;
}

const cg_target_table_t *cg_target_table(const cg_target_t *t, const char *name)
{
    size_t n;
    const cg_target_table_t *tabs = t && name ? t->tables(&n) : NULL;
    for (size_t i = 0; tabs && i < n; i++)
        if (!strcmp(tabs[i].name, name))
            return &tabs[i];
    return NULL;
}

const cg_target_table_t *cg_target_table_any(const char *name)
{
    const cg_target_table_t *t = NULL;
    for (size_t i = 0; !t && i < N_TARGETS; i++)
        t = cg_target_table(targets[i], name);
    return t;
}

const char *cg_target_what_list(int op, char *buf, size_t size)
{
    size_t o = 0;
    if (!size)
        return buf;
    buf[0] = '\0';
    for (size_t i = 0; i < N_TARGETS && o < size; i++) {
        size_t n = 0;
        const cg_target_table_t *tabs = targets[i]->tables(&n);
        int has = op < 0;
        for (size_t k = 0; tabs && !has && k < n; k++)
            has = tabs[k].op == op;
        if (has)
            o += (size_t)snprintf(buf + o, size - o, "%s%s", o ? " or " : "", targets[i]->what);
    }
    return buf;
}

const cg_target_column_t *cg_target_column(const cg_target_table_t *table, const char *name)
{
    for (size_t i = 0; table && name && i < table->n_columns; i++)
        if (!strcmp(table->columns[i].name, name))
            return &table->columns[i];
    return NULL;
}

/* Edits (insert, delete, replace) from a to b, for guessing a misspelt column; short names. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[65];
    if (la > 64 || lb > 64)
        return (size_t)-1;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *cg_target_column_hint(const cg_target_table_t *table, const char *name, char *buf,
                                  size_t size)
{
    size_t o = 0, best = (size_t)-1;
    const char *guess = NULL;
    buf[0] = '\0';
    if (!table || !size)
        return buf;
    size_t nl = name ? strlen(name) : 0;
    for (size_t i = 0; name && i < table->n_columns; i++) {
        size_t d = edit_distance(name, table->columns[i].name);
        if (d < best) {
            best = d;
            guess = table->columns[i].name;
        }
    }
    if (guess && best <= (nl / 4 > 2 ? nl / 4 : 2))
        o += (size_t)snprintf(buf, size, "did you mean '%s'? ", guess);
    if (o < size)
        o += (size_t)snprintf(buf + o, size - o, "its columns:");
    for (size_t i = 0; i < table->n_columns && o < size; i++) {
        const char *c = table->columns[i].name;
        /* room for this one and a closing ", …" */
        if (o + strlen(c) + 2 + 5 >= size) {
            snprintf(buf + o, size - o, " …");
            break;
        }
        o += (size_t)snprintf(buf + o, size - o, "%s %s", i ? "," : "", c);
    }
    return buf;
}

const cg_row_meta_t *cg_row_meta(const cg_row_t *row, const char *name)
{
    for (size_t i = 0; i < row->n_meta; i++)
        if (!strcmp(row->meta[i].name, name))
            return row->meta[i].value.len ? &row->meta[i] : NULL;
    return NULL;
}

const cg_value_t *cg_row_value_named(const cg_row_t *row, const char *name)
{
    const cg_target_column_t *c = cg_target_column(row->table, name);
    return c ? &row->values[c->index] : NULL;
}

cg_err_t cg_row_encode(const cg_row_t *row, const cg_row_source_t *src, const char *const *cohorts,
                       size_t n_cohorts, unsigned flags, cg_buf_t *out)
{
    return row->table->target->encode(row, src, cohorts, n_cohorts, flags, out);
}
