/* test_hl7_util.h - helpers shared by the HL7 unit tests. */
#ifndef TEST_HL7_UTIL_H
#define TEST_HL7_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cg_hl7.h"

/* Reads a whole file; NULL when missing. */
static inline char *th_read(const char *path, size_t *len)
{
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t r = fread(buf, 1, (size_t)n, f);
    fclose(f);
    buf[r] = '\0';
    *len = r;
    return buf;
}

static inline char *th_fixture(const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/hl7/%s", CG_TEST_FIXTURES, name);
    char *b = th_read(path, len);
    if (!b)
        fail_msg("fixture %s missing", path);
    return b;
}

/* Decoded value of path in the message scope, or NULL when the path matched nothing. The result
 * lives in a static buffer until the next call. */
static inline const char *th_get(cg_hl7_msg_t *m, const char *path)
{
    static cg_buf_t out;
    cg_hl7_path_t p;
    cg_error_t e;
    cg_error_t he;
    size_t n = 0;
    if (cg_hl7_path_compile(&p, path, strlen(path), &e) != CG_OK)
        fail_msg("path %s: %s", path, e.text);
    cg_buf_reset(&out);
    if (cg_hl7_path_get(m, &p, cg_hl7_scope_message(m), '~', &out, &n, &he) != CG_OK)
        fail_msg("path %s: decode failed: %s", path, he.text);
    return n ? out.data : NULL;
}

#define assert_get(m, path, expect)                                                                \
    do {                                                                                           \
        const char *got_ = th_get((m), (path));                                                    \
        if (!got_)                                                                                 \
            fail_msg("%s: no match, expected \"%s\"", (path), (expect));                           \
        assert_string_equal(got_, (expect));                                                       \
    } while (0)

#define assert_no_match(m, path) assert_null(th_get((m), (path)))

#endif
