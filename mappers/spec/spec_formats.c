/* spec_formats.c - the input formats (decoder kinds) the spec engine reads, as a table: each
 * names its decoder, tells its inputs apart by their first bytes and maps one input with the
 * specs of its format (cg_spec.h). A new format is one row here plus its entry point beside
 * spec_hl7.c and spec_xml.c; its path language is still chosen in spec_compile.c. */
#include "spec_mapper.h"

#include "cg_xml.h"

#include <stdio.h>
#include <string.h>

/* In sniffing order: the first whose sniff matches takes an input; the last, without a sniff,
 * takes the rest (HL7 v2 has no reliable first bytes: MSH, FHS, BHS or MLLP framing). */
static const cg_spec_format_t formats[] = {
    {"xml", CG_INPUT_XML, cg_xml_sniff, cg_mapper_map_xml},
    {"hl7v2", CG_INPUT_HL7V2, NULL, cg_mapper_map_hl7},
};

#define N_FORMATS (sizeof(formats) / sizeof(formats[0]))

const cg_spec_format_t *cg_spec_format_find(const char *name)
{
    for (size_t i = 0; name && i < N_FORMATS; i++)
        if (!strcmp(formats[i].name, name))
            return &formats[i];
    return NULL;
}

const cg_spec_format_t *cg_spec_format_of(cg_input_format_t format)
{
    for (size_t i = 0; i < N_FORMATS; i++)
        if (formats[i].format == format)
            return &formats[i];
    return NULL;
}

const cg_spec_format_t *cg_spec_format_sniff(const char *buf, size_t len)
{
    for (size_t i = 0; i < N_FORMATS; i++)
        if (!formats[i].sniff || formats[i].sniff(buf, len))
            return &formats[i];
    return &formats[N_FORMATS - 1];
}

const char *cg_spec_format_names(char *buf, size_t size)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_FORMATS && o < size; i++) /* the fallback first: the usual one */
        o += (size_t)snprintf(buf + o, size - o, "%s\"%s\"", i ? " or " : "",
                              formats[N_FORMATS - 1 - i].name);
    return buf;
}
