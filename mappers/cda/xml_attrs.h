/* xml_attrs.h - the pre-parse attribute bound of the XML decoder (xml_attrs.c), not installed. */
#ifndef CG_XML_ATTRS_H
#define CG_XML_ATTRS_H

#include <stddef.h>

/* The line of the first element with more than limit attributes, or 0 (xml_attrs.c). */
unsigned long cg_xml__too_many_attributes(const unsigned char *p, size_t len, unsigned limit);

#endif
