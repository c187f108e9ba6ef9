/* spec_test_util.h - what the spec tests share: the key and vocabulary every mapper of theirs
 * uses (made by spec_test_setup), rows as the encoder writes them, and a column's value; and for
 * the tests of the shipped specs, a mapping bundle loaded as the commands load it. */
#ifndef SPEC_TEST_UTIL_H
#define SPEC_TEST_UTIL_H

#include "cg_mapping.h"
#include "cg_pseudo.h"
#include "cg_row.h"
#include "cg_spec.h"
#include "cg_vocab.h"

extern cg_pseudo_t *pseudo;
extern cg_vocab_t *vocab;

/* cmocka group setup and teardown: pseudo and vocab (tests/fixtures/spec/vocab). */
int spec_test_setup(void **state);
int spec_test_teardown(void **state);
/* The row object of r's record ("{...}" and what follows it), as the encoder writes it (with
 * flags), from just after from; four buffers in turn, so that a test can hold a few at once. */
const char *encoded(const cg_row_t *r, unsigned flags, const char *from);
const char *row_json(const cg_row_t *r);
const char *row_trace(const cg_row_t *r);
/* The spec set of text (name: its file name in errors), with pseudo and vocab: fails the test,
 * printing the first error, when it does not load. */
cg_specset_t *spec_test_load(const char *text, const char *name);
/* A mapper of ss with pseudo and vocab: fails the test when none is made. */
cg_mapper_t *spec_test_mapper(cg_specset_t *ss);
/* The bundle of o (cg_mapping_load, as run, map, test and check load theirs) and a worker of it
 * in *w: fails the test, printing the first error, when either is not made. */
cg_mapping_t *spec_test_mapping(const cg_mapping_opts_t *o, cg_mapping_worker_t **w);
/* Fails unless r's column col holds exactly want. */
void assert_value(const cg_row_t *r, const char *col, const char *want);

#endif
