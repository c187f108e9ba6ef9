/* xml_test_util.h - what the XML decoder's tests (test_xml.c, test_xml_hostile.c) share. */
#ifndef CG_XML_TEST_UTIL_H
#define CG_XML_TEST_UTIL_H

#include <stddef.h>

#include <libxml/tree.h>

#include "cg_xml.h"

/* A fixture of tests/unit/xml; fails the test when it is missing. */
char *xt_fixture(const char *name, size_t *len);
/* cg_xml_parse of a C string. */
cg_err_t xt_parse_str(cg_xml_doc_t *d, const char *s, cg_error_t *e);
/* The first element named name in the current document, depth first; NULL: none. */
xmlNodePtr xt_element(cg_xml_doc_t *d, const char *name);
/* Text content of the first element named name in the current document (a static copy). */
const char *xt_text_of(cg_xml_doc_t *d, const char *name);

#endif
