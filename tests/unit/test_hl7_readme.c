/* test_hl7_readme.c - runs every example of specs/PATHS.md (the path language reference): the
 * message in its ```hl7 block and each row of its example tables. */
#include "test_hl7_util.h"

enum { T_NONE, T_VALUE, T_CURSOR, T_ERROR };

/* Splits a markdown table row into cells (a "\|" stays inside its cell). Returns the count. */
static int cells(const char *line, char out[][256], int max)
{
    int n = 0;
    const char *p = strchr(line, '|');
    if (!p)
        return 0;
    p++;
    while (*p && n < max) {
        size_t w = 0;
        while (*p && !(*p == '|' && p[-1] != '\\')) {
            if (w < 255)
                out[n][w++] = *p;
            p++;
        }
        if (!*p)
            break;
        while (w && out[n][w - 1] == ' ')
            w--;
        out[n][w] = '\0';
        size_t s = 0;
        while (out[n][s] == ' ')
            s++;
        memmove(out[n], out[n] + s, w - s + 1);
        n++;
        p++;
    }
    return n;
}

/* `code` -> code, with \| and \n decoded; (no match) -> returns 0. */
static int unquote(const char *cell, char *out, size_t size)
{
    if (!strcmp(cell, "(no match)"))
        return 0;
    size_t n = strlen(cell);
    if (n >= 2 && cell[0] == '`' && cell[n - 1] == '`') {
        cell++;
        n -= 2;
    }
    if (n == 2 && cell[0] == '"' && cell[1] == '"')
        n = 0;
    size_t w = 0;
    for (size_t i = 0; i < n && w + 1 < size; i++) {
        if (cell[i] == '\\' && i + 1 < n && cell[i + 1] == '|') {
            out[w++] = '|';
            i++;
        } else if (cell[i] == '\\' && i + 1 < n && cell[i + 1] == 'n') {
            out[w++] = '\n';
            i++;
        } else {
            out[w++] = cell[i];
        }
    }
    out[w] = '\0';
    return 1;
}

static void test_readme_examples(void **state)
{
    (void)state;
    size_t len;
    char *doc = th_read(CG_SOURCE_DIR "/specs/PATHS.md", &len);
    assert_non_null(doc);
    cg_buf_t msg;
    cg_buf_init(&msg);
    cg_hl7_msg_t *m = cg_hl7_msg_new(NULL);
    int in_hl7 = 0, table = T_NONE, parsed = 0, checked = 0;
    char *save = NULL;
    for (char *line = strtok_r(doc, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (in_hl7) {
            if (!strncmp(line, "```", 3)) {
                in_hl7 = 0;
                cg_error_t e;
                assert_int_equal(cg_hl7_parse(m, msg.data, msg.len, &e), CG_OK);
                parsed = 1;
            } else {
                cg_buf_puts(&msg, line);
                cg_buf_putc(&msg, '\r');
            }
            continue;
        }
        if (!strncmp(line, "```hl7", 6)) {
            in_hl7 = 1;
            continue;
        }
        if (line[0] != '|') {
            table = T_NONE;
            continue;
        }
        char c[4][256];
        int n = cells(line, c, 4);
        if (n >= 2 && !strcmp(c[0], "path") && !strcmp(c[1], "result"))
            table = T_VALUE;
        else if (n >= 3 && !strcmp(c[0], "cursor"))
            table = T_CURSOR;
        else if (n >= 3 && !strcmp(c[1], "error column"))
            table = T_ERROR;
        if (c[0][0] != '`' && table != T_CURSOR)
            continue; /* header, separator or a row of the syntax table */
        if (table == T_CURSOR && (c[0][0] < '0' || c[0][0] > '9'))
            continue;
        char path[256], want[256];
        cg_hl7_path_t p;
        cg_error_t err;
        if (table == T_VALUE || table == T_CURSOR) {
            assert_true(parsed);
            const char *pc = table == T_VALUE ? c[0] : c[1];
            const char *rc = table == T_VALUE ? c[1] : c[2];
            unquote(pc, path, sizeof(path));
            int has = unquote(rc, want, sizeof(want));
            if (cg_hl7_path_compile(&p, path, strlen(path), &err) != CG_OK)
                fail_msg("README path %s: %s", path, err.text);
            cg_hl7_scope_t sc = cg_hl7_scope_message(m);
            if (table == T_CURSOR)
                sc = cg_hl7_scope_at(m, (uint32_t)atoi(c[0]) - 1);
            cg_buf_t out;
            cg_buf_init(&out);
            size_t count = 0;
            cg_error_t he;
            assert_int_equal(cg_hl7_path_get(m, &p, sc, '~', &out, &count, &he), CG_OK);
            if (!has && count)
                fail_msg("README %s: expected no match, got \"%s\"", path, out.data);
            if (has && (!count || strcmp(out.data, want)))
                fail_msg("README %s: got \"%s\" (%zu matches), expected \"%s\"", path,
                         count ? out.data : "", count, want);
            cg_buf_free(&out);
            checked++;
        } else if (table == T_ERROR) {
            unquote(c[0], path, sizeof(path));
            unquote(c[2], want, sizeof(want));
            if (cg_hl7_path_compile(&p, path, strlen(path), &err) == CG_OK)
                fail_msg("README %s: compiled, expected an error", path);
            if (err.column != atoi(c[1]))
                fail_msg("README %s: column %d, expected %s", path, err.column, c[1]);
            if (!strstr(err.text, want))
                fail_msg("README %s: \"%s\" lacks \"%s\"", path, err.text, want);
            checked++;
        }
    }
    printf("specs/PATHS.md: %d examples checked\n", checked);
    assert_true(checked >= 40);
    cg_buf_free(&msg);
    cg_hl7_msg_destroy(m);
    free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_readme_examples)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
