/* spec_formats.c - the registry of input formats (decoder kinds, cg_spec_format.h), as nginx's
 * module list: each format is a const struct in its own files (spec_xml_format.c,
 * spec_hl7_format.c) and a line here. */
#include "cg_spec_format.h"

#include <stdio.h>
#include <string.h>

extern const cg_spec_format_t cg_spec_format_xml;
extern const cg_spec_format_t cg_spec_format_hl7v2;

/* In sniffing order: the first whose sniff matches takes an input; the last, without a sniff,
 * takes the rest (HL7 v2 has no reliable first bytes: MSH, FHS, BHS or MLLP framing). */
static const cg_spec_format_t *const formats[] = {
    &cg_spec_format_xml,
    &cg_spec_format_hl7v2,
};

#define N_FORMATS (sizeof(formats) / sizeof(formats[0]))

const cg_spec_format_t *cg_spec_format_find(const char *name)
{
    for (size_t i = 0; name && i < N_FORMATS; i++)
        if (!strcmp(formats[i]->name, name))
            return formats[i];
    return NULL;
}

const cg_spec_format_t *cg_spec_format_of(cg_input_format_t format)
{
    for (size_t i = 0; i < N_FORMATS; i++)
        if (formats[i]->format == format)
            return formats[i];
    return NULL;
}

const cg_spec_format_t *cg_spec_format_sniff(const char *buf, size_t len)
{
    for (size_t i = 0; i < N_FORMATS; i++)
        if (!formats[i]->sniff || formats[i]->sniff(buf, len))
            return formats[i];
    return formats[N_FORMATS - 1];
}

const char *cg_spec_format_names(char *buf, size_t size)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_FORMATS && o < size; i++) /* the fallback first: the usual one */
        o += (size_t)snprintf(buf + o, size - o, "%s\"%s\"", i ? " or " : "",
                              formats[N_FORMATS - 1 - i]->name);
    return buf;
}
