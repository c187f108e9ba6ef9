/* xml_test_util.h - what the XML decoder's tests (test_xml.c, test_xml_hostile.c) share. */
#ifndef CG_XML_TEST_UTIL_H
#define CG_XML_TEST_UTIL_H

#include <stddef.h>

#include "cg_xml.h"

/* A file's bytes, NUL-terminated (malloc'ed); NULL when it cannot be read. */
char *xt_read_path(const char *path, size_t *len);
/* A fixture of tests/unit/xml; fails the test when it is missing. */
char *xt_fixture(const char *name, size_t *len);
/* cg_xml_parse of a C string. */
cg_err_t xt_parse_str(cg_xml_doc_t *d, const char *s, cg_error_t *e);
/* Text content of the first element named name in the current document (a static copy). */
const char *xt_text_of(cg_xml_doc_t *d, const char *name);

#endif
