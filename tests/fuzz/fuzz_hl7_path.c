/* fuzz_hl7_path.c - libFuzzer target for the path compiler: arbitrary text either compiles, and
 * then formats to a canonical text that compiles to the same path, or fails with a column inside
 * the text (or one past its end). */
#include "cg_hl7.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cg_hl7_path_t p, q;
    cg_error_t e;
    if (cg_hl7_path_compile(&p, (const char *)data, size, &e) != CG_OK) {
        if (e.column < 1 || (size_t)e.column > size + 1)
            abort();
        return 0;
    }
    char buf[128 + CG_HL7_SEL_MAX];
    cg_hl7_path_format(&p, buf, sizeof(buf));
    /* equal, not byte-equal: a selector's values point into the text each was compiled from */
    if (cg_hl7_path_compile(&q, buf, strlen(buf), &e) != CG_OK || !cg_hl7_path_equal(&p, &q))
        abort();
    return 0;
}
