/* spec_free_text.c - a rule's "free_text": the free-text columns it writes (specs/README.md,
 * "Free text"). Text as a person wrote it (a TX result, a note's title, a sig) may name anyone,
 * and no code set can check it, so a free-text column (cg_target_column_t.free_text) reaches a
 * row only when the rule lists it; otherwise the column is left out when the spec compiles,
 * so mapping never evaluates it. A rule without "free_text" that maps one gets a warning (it
 * may not know); one with "free_text" decided (the shipped specs list "${free_text}", a
 * parameter whose default lists none, so that a site opts in without copying a spec). */
#include "spec_compile.h"

#include <string.h>

#define err_at cg_spec_cc_err

/* Whether some table of any target has a free-text column of that name (a site's list, shared
 * by every spec through one parameter, names columns of other rules' tables too). */
static int free_text_anywhere(const char *name, size_t len)
{
    const cg_target_t *t;
    for (size_t i = 0; (t = cg_target_at(i)); i++) {
        size_t n = 0;
        const cg_target_table_t *tabs = t->tables(&n);
        for (size_t k = 0; tabs && k < n; k++)
            for (size_t j = 0; j < tabs[k].n_columns; j++)
                if (tabs[k].columns[j].free_text && strlen(tabs[k].columns[j].name) == len &&
                    !memcmp(tabs[k].columns[j].name, name, len))
                    return 1;
    }
    return 0;
}

/* One name of the list (after parameters): marks its column of the rule's table. */
static void opt_in(cc_t *c, const json_t *at, const rule_t *r, const char *name, size_t len,
                   unsigned char *optin)
{
    for (size_t i = 0; i < r->table->n_columns; i++) {
        const cg_target_column_t *col = &r->table->columns[i];
        if (strlen(col->name) != len || memcmp(col->name, name, len))
            continue;
        if (!col->free_text)
            err_at(c, at, NULL, NULL,
                   "\"free_text\" lists %s.%s, which is not a free-text column: list only "
                   "columns of text as written (value_as_string, note_text, sig …)",
                   r->table->name, col->name);
        else
            optin[i] = 1;
        return;
    }
    if (!free_text_anywhere(name, len))
        err_at(c, at, NULL, NULL,
               "\"free_text\" lists '%.*s', which is no free-text column of any table "
               "(value_as_string, note_text, note_title, sig, stop_reason …)",
               (int)len, name);
    /* else a column of another table, for another rule: nothing here */
}

int cg_spec_free_text_optin(cc_t *c, json_t *rule, const rule_t *r, unsigned char *optin)
{
    json_t *ft = json_object_get(rule, "free_text");
    if (!ft)
        return 0;
    if (!json_is_array(ft)) {
        err_at(c, ft, rule, "free_text",
               "\"free_text\" is a list of the free-text columns the rule writes: "
               "[\"value_as_string\"], or [\"${PARAMETER}\"] for a site to choose");
        return 1;
    }
    size_t i;
    json_t *it;
    json_array_foreach(ft, i, it)
    {
        if (!json_is_string(it)) {
            err_at(c, it, NULL, NULL, "\"free_text\" lists column names (strings)");
            continue;
        }
        const char *s = cg_spec_params_expand(c, it, json_string_value(it), json_string_length(it));
        /* a parameter may hold several, "value_as_string|sig", or none, "" */
        for (const char *p = s; p && *p;) {
            const char *bar = strchr(p, '|');
            size_t n = bar ? (size_t)(bar - p) : strlen(p);
            const char *b = p, *e = p + n;
            while (b < e && (*b == ' ' || *b == '\t'))
                b++;
            while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            if (e > b)
                opt_in(c, it, r, b, (size_t)(e - b), optin);
            p = bar ? bar + 1 : e;
        }
    }
    return 1;
}

int cg_spec_free_text_keep(cc_t *c, json_t *cols, const column_t *cc, const unsigned char *optin,
                           int declared)
{
    const cg_target_column_t *col = cc->col;
    if (!col->free_text || optin[col->index])
        return 1;
    if (cc->expr && cc->expr->kind == EX_CONST && !cc->expr->n_xforms)
        return 1; /* the spec's own text (note_text ""), nothing of the input */
    if (col->required)
        err_at(c, NULL, cols, col->name,
               "%s.%s is free text (it may name a person) and required: list it in the rule's "
               "\"free_text\" to map it from the input, or give a constant",
               col->table->name, col->name);
    else if (!declared)
        cg_spec_warn(c, NULL, cols, col->name,
                     "%s.%s is free text (it may name a person) and is left out: list it in the "
                     "rule's \"free_text\" to map it",
                     col->table->name, col->name);
    return 0;
}
