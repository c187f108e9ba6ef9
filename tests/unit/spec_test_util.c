/* spec_test_util.c - see spec_test_util.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "cg_buf.h"
#include "spec_test_util.h"

/* The row object of r's record ("{...}" and what follows it), as the encoder writes it; four
 * buffers in turn, so that a test can hold a few at once. */
const char *encoded(const cg_row_t *r, unsigned flags, const char *from)
{
    static cg_buf_t bufs[4];
    static unsigned next;
    cg_buf_t *b = &bufs[next++ % 4];
    cg_buf_reset(b);
    assert_int_equal(cg_row_encode(r, NULL, NULL, 0, flags, b), CG_OK);
    const char *p = strstr(b->data, from);
    assert_non_null(p);
    return p + strlen(from);
}

const char *row_json(const cg_row_t *r)
{
    return encoded(r, 0, ",\"row\":");
}

const char *row_trace(const cg_row_t *r)
{
    return encoded(r, CG_ROW_ENCODE_TRACE, ",\"trace\":");
}

cg_pseudo_t *pseudo;
cg_vocab_t *vocab;

cg_specset_t *spec_test_load(const char *text, const char *name)
{
    cg_error_t errs[8];
    size_t ne = 0;
    cg_spec_env_t env = {.vocab = vocab, .pseudo = pseudo};
    cg_specset_t *ss = cg_specset_load_string(text, name, &env, errs, 8, &ne);
    if (!ss && ne)
        fprintf(stderr, "%s: %s\n", name, errs[0].text);
    assert_non_null(ss);
    return ss;
}

cg_mapper_t *spec_test_mapper(cg_specset_t *ss)
{
    cg_spec_env_t env = {.vocab = vocab, .pseudo = pseudo};
    char err[256];
    cg_mapper_t *mp = cg_mapper_new(ss, &env, err, sizeof(err));
    if (!mp)
        fprintf(stderr, "cg_mapper_new: %s\n", err);
    assert_non_null(mp);
    return mp;
}

cg_mapping_t *spec_test_mapping(const cg_mapping_opts_t *o, cg_mapping_worker_t **w)
{
    cg_error_t errs[8];
    size_t ne = 0;
    cg_mapping_t *m = cg_mapping_load(o, errs, 8, &ne);
    if (!m) {
        char line[CG_ERROR_FORMAT_SIZE];
        fail_msg("mapping: %s",
                 ne ? cg_error_format(&errs[0], line, sizeof(line)) : "no error said");
    }
    char err[256];
    *w = cg_mapping_worker_new(m, err, sizeof(err));
    if (!*w)
        fail_msg("cg_mapping_worker_new: %s", err);
    return m;
}

int spec_test_setup(void **state)
{
    (void)state;
    char err[256];
    cg_pseudo_key_t *k =
        cg_pseudo_key_new("0123456789abcdef0123456789abcdef", 32, err, sizeof(err));
    pseudo = cg_pseudo_new(k, 0, err, sizeof(err));
    cg_pseudo_key_destroy(k);
    vocab = cg_vocab_new();
    size_t n = 0;
    cg_vocab_load_csv_dir(vocab, CG_TEST_FIXTURES "/spec/vocab", NULL, 0, &n);
    return pseudo && vocab && n == 0 ? 0 : -1;
}

int spec_test_teardown(void **state)
{
    (void)state;
    cg_pseudo_destroy(pseudo);
    cg_vocab_destroy(vocab);
    return 0;
}

void assert_value(const cg_row_t *r, const char *col, const char *want)
{
    const cg_value_t *v = cg_row_value_named(r, col);
    assert_non_null(v);
    if (v->len != strlen(want) || memcmp(v->ptr, want, v->len))
        fail_msg("%s: \"%.*s\", not \"%s\"", col, (int)v->len, v->ptr, want);
}
