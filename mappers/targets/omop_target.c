/* omop_target.c - OMOP CDM v5.4 as a target: its tables, seen through cg_target.h.
 *
 * The schema stays the generated data of omop_schema.c (one source, checked against OHDSI's CSV
 * by test_omop_schema); the generic tables are derived from it once, on first use. */
#include "target_impl.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static cg_col_type_t col_type(const cg_omop_column_t *col)
{
    switch (cg_omop_column_type(col)) {
    case CG_OMOP_INTEGER:
        return CG_COL_INT32;
    case CG_OMOP_BIGINT:
        return CG_COL_INT64;
    case CG_OMOP_FLOAT:
        return CG_COL_NUMBER;
    case CG_OMOP_VARCHAR:
        /* OMOP's varchar(MAX) is TEXT; a varchar without a length would be too */
        return col->max_length > 0 ? CG_COL_VARCHAR : CG_COL_TEXT;
    case CG_OMOP_TEXT:
        return CG_COL_TEXT;
    case CG_OMOP_DATE:
        return CG_COL_DATE;
    case CG_OMOP_DATETIME:
        return CG_COL_DATETIME;
    }
    return CG_COL_TEXT;
}

#define HEAD_STANDARD "{\"standard\":"
#define HEAD_TABLE    ",\"table\":"

/* The envelope's fixed start of t's records into p (cg_target_table_t.json_head), when the
 * names need no escaping (else left to the envelope); returns the end. */
static char *put_head(cg_target_table_t *t, char *p)
{
    size_t sn = strlen(t->target->name), tn = strlen(t->name);
    if (!sn || !tn || !cg_buf_json_plain(t->target->name, sn) || !cg_buf_json_plain(t->name, tn))
        return p;
    char *o = p;
    memcpy(o, HEAD_STANDARD "\"", sizeof(HEAD_STANDARD));
    o += sizeof(HEAD_STANDARD);
    memcpy(o, t->target->name, sn);
    o += sn;
    memcpy(o, "\"" HEAD_TABLE "\"", sizeof(HEAD_TABLE) + 1);
    o += sizeof(HEAD_TABLE) + 1;
    memcpy(o, t->name, tn);
    o += tn;
    *o++ = '"';
    t->json_head = p;
    t->json_head_len = (uint32_t)(o - p);
    return o;
}

cg_target_table_t *cg_target_from_omop(const cg_target_t *target, const cg_omop_table_t *tables,
                                       size_t n_tables, const char *person_key)
{
    size_t n_cols = 0, key_bytes = 0, head_bytes = 0;
    for (size_t t = 0; t < n_tables; t++) {
        head_bytes +=
            sizeof(HEAD_STANDARD HEAD_TABLE) + strlen(target->name) + 4 + strlen(tables[t].name);
        for (size_t i = 0; i < tables[t].n_columns; i++) {
            size_t n = strlen(tables[t].columns[i].name) + 4;
            key_bytes += n > CG_TARGET_KEY_PAD ? n : CG_TARGET_KEY_PAD;
            n_cols++;
        }
    }
    /* one block each: they live as long as the program */
    cg_target_table_t *tabs = calloc(n_tables, sizeof(*tabs));
    cg_target_column_t *cols = calloc(n_cols ? n_cols : 1, sizeof(*cols));
    char *keys = calloc(key_bytes ? key_bytes : 1, 1);
    char *heads = malloc(head_bytes ? head_bytes : 1);
    if (!tabs || !cols || !keys || !heads) {
        free(tabs);
        free(cols);
        free(keys);
        free(heads);
        return NULL;
    }
    for (size_t t = 0; t < n_tables; t++) {
        const cg_omop_table_t *ot = &tables[t];
        cg_target_table_t *tt = &tabs[t];
        tt->name = ot->name;
        tt->target = target;
        tt->columns = cols;
        tt->n_columns = ot->n_columns;
        tt->impl = ot;
        heads = put_head(tt, heads);
        for (size_t i = 0; i < ot->n_columns; i++) {
            const cg_omop_column_t *oc = &ot->columns[i];
            cg_target_column_t *c = cols++;
            size_t n = strlen(oc->name);
            c->name = oc->name;
            c->type = col_type(oc);
            c->max_length = c->type == CG_COL_VARCHAR ? oc->max_length : 0;
            c->required = oc->required;
            c->primary_key = oc->primary_key;
            c->index = (uint32_t)i;
            c->table = tt;
            c->impl = oc;
            /* "name": — OMOP names need no JSON escaping (lower case, digits, _) */
            keys[0] = '"';
            memcpy(keys + 1, oc->name, n);
            memcpy(keys + 1 + n, "\":", 2);
            c->json_key = keys;
            c->json_key_len = (uint32_t)(n + 3);
            keys += n + 4 > CG_TARGET_KEY_PAD ? n + 4 : CG_TARGET_KEY_PAD;
            if (oc->primary_key && !tt->pk)
                tt->pk = c;
            if (person_key && !strcmp(oc->name, person_key))
                tt->person = c;
        }
    }
    return tabs;
}

static void mark(cg_target_table_t *tabs, size_t n_tables, const cg_target_mark_t *m, int source)
{
    for (; m && m->table; m++)
        for (size_t t = 0; t < n_tables; t++)
            for (size_t i = 0; !strcmp(tabs[t].name, m->table) && i < tabs[t].n_columns; i++) {
                /* the columns were allocated here, writable until handed out */
                cg_target_column_t *c = (cg_target_column_t *)&tabs[t].columns[i];
                if (!strcmp(c->name, m->column)) {
                    if (source)
                        c->source_id = true;
                    else
                        c->free_text = true;
                }
            }
}

void cg_target_mark(cg_target_table_t *tabs, size_t n_tables, const cg_target_mark_t *free_text,
                    const cg_target_mark_t *source_id)
{
    if (!tabs)
        return;
    mark(tabs, n_tables, free_text, 0);
    mark(tabs, n_tables, source_id, 1);
}

bool cg_target_omop_check(const cg_target_column_t *col, const char *text, size_t len, bool quoted,
                          char *why, size_t why_size)
{
    return cg_omop_check_value(col->impl, text, len, quoted, why, why_size);
}

static const cg_target_table_t *omop_tabs;
static size_t omop_n;

/* OMOP's text columns that hold what a person wrote rather than a code, a number or a name of
 * a concept: the catalogue flags the same ones free_text (specs/classification/columns.csv,
 * test_target_free_text). Source values (*_source_value) are codes as sent. */
static const cg_target_mark_t omop_free_text[] = {
    {"condition_occurrence", "stop_reason"},
    {"drug_exposure", "stop_reason"},
    {"drug_exposure", "sig"},
    {"observation", "value_as_string"},
    {"note", "note_title"},
    {"note", "note_text"},
    {"note_nlp", "snippet"},
    {"note_nlp", "lexical_variant"},
    {"note_nlp", "term_modifiers"},
    {NULL, NULL},
};

static void omop_build(void)
{
    cg_target_table_t *t = cg_target_from_omop(&cg_target_omop_cdm54, cg_omop_cdm54_tables,
                                               cg_omop_cdm54_n_tables, "person_id");
    cg_target_mark(t, cg_omop_cdm54_n_tables, omop_free_text, NULL);
    omop_tabs = t;
    omop_n = omop_tabs ? cg_omop_cdm54_n_tables : 0;
}

static const cg_target_table_t *omop_tables(size_t *n)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, omop_build);
    *n = omop_n;
    return omop_tabs;
}

const cg_target_t cg_target_omop_cdm54 = {
    .name = "omop-cdm-5.4",
    .what = "an OMOP CDM v5.4 table",
    .tables = omop_tables,
    .check = cg_target_omop_check,
    .encode = cg_target_json_envelope,
};
