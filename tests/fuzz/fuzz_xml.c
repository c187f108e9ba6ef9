/* fuzz_xml.c - the XML decoder with the spec evaluator under libFuzzer.
 * Each input is decoded as an XML document (hardened libxml2: no entities, no network, depth and
 * size limits), summarized as `cohortgate parse` would, and mapped by every shipped spec (the
 * C-CDA spec among them). Errors are fine; crashes, leaks and hangs are not. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_shipped.h"
#include "cg_spec.h"
#include "cg_xml.h"

static cg_xml_doc_t *doc;
static cg_xml_eval_t *ev;
static cg_xml_xpath_t *xp;

static void init(void)
{
    fuzz_shipped_init();
    cg_xml_options_t o;
    cg_xml_options_default(&o);
    o.max_bytes = 1 << 20;
    doc = cg_xml_doc_new(&o);
    ev = cg_xml_eval_new();
    cg_error_t e;
    xp = cg_xml_xpath_compile("//hl7:section/hl7:entry//@code | //*[@ID]", NULL, 0, &e);
    if (!doc || !ev || !xp)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!worker)
        init();
    const char *buf = (const char *)data;
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    cg_mapping_worker_map(worker, CG_INPUT_XML, buf, size, &rows, &n, &me);
    for (size_t i = 0; i < n; i++) {
        cg_buf_t out;
        cg_buf_init(&out);
        cg_row_encode(&rows[i], NULL, NULL, 0, CG_ROW_ENCODE_TRACE, &out);
        cg_buf_free(&out);
    }
    cg_error_t xe;
    if (cg_xml_parse(doc, buf, size, &xe) == CG_OK) {
        cg_buf_t out;
        cg_buf_init(&out);
        cg_xml_summary(doc, &out);
        cg_xml_eval_bind(ev, doc);
        cg_xml_xpath_values(ev, xp, NULL, '~', &out);
        cg_slice_t v;
        if (cg_xml_xpath_value(ev, xp, NULL, &v))
            cg_xml_find_id(ev, v.ptr, v.len);
        cg_buf_free(&out);
    }
    return 0;
}
