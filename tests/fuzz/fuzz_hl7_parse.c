/* fuzz_hl7_parse.c - libFuzzer target: split and index arbitrary input, walk the whole index,
 * decode every value and evaluate a few paths. Small limits keep each run cheap. */
#include "cg_hl7.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cg_hl7_msg_t *m, *mgb;
    static cg_buf_t out;
    static cg_hl7_path_t paths[4];
    if (!m) {
        cg_hl7_options_t o;
        cg_hl7_options_default(&o);
        o.max_fields = 200;
        o.max_reps = 200;
        o.max_segments = 500;
        m = cg_hl7_msg_new(&o);
        o.default_charset = "GB 18030-2000";
        o.strict_segments = 1;
        mgb = cg_hl7_msg_new(&o);
        const char *p[] = {"PID-5.1", "OBX[*]-5[*]", "MSH-9.2", "PID-3[*].4.2"};
        for (int i = 0; i < 4; i++)
            cg_hl7_path_compile(&paths[i], p[i], strlen(p[i]), NULL);
    }
    for (int pass = 0; pass < 2; pass++) {
        cg_hl7_msg_t *mm = pass ? mgb : m;
        cg_hl7_reader_t r;
        cg_hl7_error_t e;
        char loc[512];
        cg_hl7_reader_init(&r, (const char *)data, size);
        while (cg_hl7_reader_more(&r)) {
            if (cg_hl7_reader_next(&r, mm, &e) != CG_OK) {
                cg_hl7_error_location(&e, loc, sizeof(loc));
                continue;
            }
            for (uint32_t s = 0; s < cg_hl7_seg_count(mm); s++) {
                for (uint32_t f = 0; f <= cg_hl7_field_count(mm, s) + 1; f++) {
                    uint32_t nr = cg_hl7_rep_count(mm, s, f);
                    for (uint32_t rp = 0; rp <= nr + 1; rp++) {
                        uint32_t nc = cg_hl7_comp_count(mm, s, f, rp);
                        for (uint32_t c = 0; c <= nc + 1; c++) {
                            uint32_t ns = cg_hl7_sub_count(mm, s, f, rp, c);
                            for (uint32_t k = 0; k <= ns + 1; k++) {
                                cg_slice_t v;
                                if (cg_hl7_get_raw(mm, s, f, rp, c, k, &v)) {
                                    cg_buf_reset(&out);
                                    if (cg_hl7_decode(mm, v, &out, &e) != CG_OK)
                                        cg_hl7_error_location(&e, loc, sizeof(loc));
                                }
                            }
                        }
                    }
                }
            }
            for (int i = 0; i < 4; i++) {
                for (uint32_t s = 0; s < cg_hl7_seg_count(mm); s += 3) {
                    cg_buf_reset(&out);
                    cg_hl7_path_get(mm, &paths[i], cg_hl7_scope_at(mm, s), '~', &out, NULL, &e);
                }
            }
        }
    }
    /* the header peek must agree that a decodable input is HL7 */
    cg_hl7_msh_t h;
    char err[128];
    cg_hl7_msh_peek((const char *)data, size, &h, err, sizeof(err));
    return 0;
}
