/* spec_document.c - the compiler's side of a rule's "document" (spec_compile.h): the field that
 * holds a whole XML document (an MDM's CDA in OBX-5), handed to the XML specs at run time
 * (spec_embed.c). Such a rule makes no row of its own, so the keys of a row are refused. */
#include "spec_compile.h"

#include <string.h>

void cg_spec_document_compile(cc_t *c, json_t *j, json_t *doc, rule_t *r)
{
    static const char *const keys[] = {"format", "data", "encoding", NULL};
    static const char *const row_keys[] = {"table", "columns", "id", "meta", "delete_when"};
    for (size_t i = 0; i < sizeof(row_keys) / sizeof(row_keys[0]); i++)
        if (json_object_get(j, row_keys[i]))
            cg_spec_cc_err(c, json_object_get(j, row_keys[i]), j, row_keys[i],
                           "a rule with \"document\" makes no row of its own (the document's "
                           "specs make them): it has no \"%s\"",
                           row_keys[i]);
    if (!json_is_object(doc)) {
        cg_spec_cc_err(c, doc, j, "document",
                       "\"document\" is {\"format\": \"xml\", \"data\": EXPRESSION, "
                       "\"encoding\": EXPRESSION}");
        return;
    }
    cg_spec_cc_check_keys(c, doc, "\"document\"", keys);
    json_t *f = json_object_get(doc, "format");
    if (!json_is_string(f) || strcmp(json_string_value(f), "xml"))
        cg_spec_cc_err(c, f, doc, "format",
                       "\"format\" must be \"xml\": an embedded document is mapped by the "
                       "spec set's XML specs");
    /* an XML document inside an XML document would run the XML specs inside themselves */
    if (c->spec->format->format != CG_INPUT_HL7V2)
        cg_spec_cc_err(c, doc, j, "document",
                       "\"document\" stands in HL7 v2 specs only (an MDM's OBX-5)");
    /* the document's rows are the message's patient's, so the spec must say who that is */
    if (!c->spec->has_patient)
        cg_spec_cc_err(c, doc, j, "document",
                       "a spec with a \"document\" rule needs a \"patient\": the document's "
                       "rows are keyed to the message's patient");
    json_t *data = json_object_get(doc, "data");
    if (!data)
        cg_spec_cc_err(c, doc, j, "document",
                       "\"document\" needs \"data\": the expression whose value is the document");
    else
        r->doc_data = c->expr(c, data);
    json_t *enc = json_object_get(doc, "encoding");
    if (enc)
        r->doc_encoding = c->expr(c, enc);
}
