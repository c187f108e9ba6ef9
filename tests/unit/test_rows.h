/* test_rows.h - typed rows written by hand for unit tests (cmocka): ROW(table, {column, kind,
 * text}...) in a function with a cg_value_t vals[] big enough for the table. */
#ifndef CG_TEST_ROWS_H
#define CG_TEST_ROWS_H

#include <string.h>

#include "cg_row.h"
#include "cg_target.h"

/* A row of table holding cells (column, kind, text); every other column absent. vals has room
 * for the table's columns. */
typedef struct cell {
    const char *column;
    uint32_t kind;
    const char *text;
} cell_t;

static inline cg_row_t make_row(const char *table, cg_value_t *vals, const cell_t *cells, size_t n)
{
    const cg_target_table_t *t = cg_target_table_any(table);
    assert_non_null(t);
    memset(vals, 0, t->n_columns * sizeof(*vals));
    for (size_t i = 0; i < n; i++) {
        const cg_target_column_t *c = cg_target_column(t, cells[i].column);
        assert_non_null(c);
        vals[c->index] =
            (cg_value_t){cells[i].text, cells[i].text ? (uint32_t)strlen(cells[i].text) : 0,
                         (uint8_t)cells[i].kind, 0, 0};
    }
    return (cg_row_t){.table = t, .values = vals};
}

#define ROW(table, ...)                                                                            \
    make_row(table, vals, (const cell_t[]){__VA_ARGS__},                                           \
             sizeof((const cell_t[]){__VA_ARGS__}) / sizeof(cell_t))

#endif
