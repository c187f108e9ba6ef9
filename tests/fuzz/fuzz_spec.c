/* fuzz_spec.c - the spec compiler and the evaluator under libFuzzer.
 * Input starting with '{' is compiled as a spec (errors are fine; crashes, leaks and hangs are
 * not). Anything else is mapped as an HL7 v2 message by every shipped spec, compiled once. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_shipped.h"
#include "cg_spec.h"

static void init(void)
{
    fuzz_shipped_init();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!worker)
        init();
    if (size && data[0] == '{') {
        char *text = malloc(size + 1);
        memcpy(text, data, size);
        text[size] = '\0';
        cg_error_t errs[8];
        size_t n = 0;
        /* spec text in memory, which a bundle cannot load (it reads files): compiled by hand */
        cg_spec_env_t env = {.vocab = cg_mapping_vocab(shipped),
                             .pseudo = cg_mapping_pseudo(shipped),
                             .authorities = authorities};
        cg_specset_t *ss = cg_specset_load_string(text, "fuzz.json", &env, errs, 8, &n);
        if (ss) {
            char err[256];
            cg_mapper_t *mp = cg_mapper_new(ss, &env, err, sizeof(err));
            static const char msg[] = "MSH|^~\\&|A|B|C|D|20240314||ORU^R01|M1|P|2.5\r"
                                      "PID|1||1^^^H\rOBR|1\rOBX|1|NM|X^Y^LN||1|%\r";
            const cg_row_t *rows;
            size_t nr;
            cg_mapper_map_hl7(mp, msg, sizeof(msg) - 1, &rows, &nr, NULL);
            cg_mapper_destroy(mp);
            cg_specset_destroy(ss);
        }
        free(text);
        return 0;
    }
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    cg_mapping_worker_map(worker, CG_INPUT_HL7V2, (const char *)data, size, &rows, &n, &me);
    return 0;
}
