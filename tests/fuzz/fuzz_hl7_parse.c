/* fuzz_hl7_parse.c - libFuzzer target: split and index arbitrary input, walk the whole index,
 * decode every value and evaluate a few paths. Small limits keep each run cheap. Each input is
 * also indexed by the portable scanner and by the wide one (AVX2, when the CPU has it): their
 * messages, errors, segments and leaves must be the same. */
#include "cg_hl7.h"
#include "hl7_impl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* FNV-1a over what the index says of every message of data: where it is, its error or its
 * segments, and every leaf (subcomponent) of every field as an offset and a length. */
static uint64_t mix(uint64_t h, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        h ^= (v >> (8 * i)) & 0xff;
        h *= 0x100000001b3u;
    }
    return h;
}

static uint64_t fingerprint(cg_hl7_msg_t *m, const uint8_t *data, size_t size)
{
    uint64_t h = 0xcbf29ce484222325u;
    cg_hl7_reader_t r;
    cg_error_t e;
    cg_hl7_reader_init(&r, (const char *)data, size);
    while (cg_hl7_reader_more(&r)) {
        cg_err_t rc = cg_hl7_reader_next(&r, m, &e);
        h = mix(h, (uint64_t)rc);
        if (rc != CG_OK) {
            h = mix(h, e.offset);
            h = mix(h, e.segment);
            h = mix(h, (uint64_t)e.field);
            for (const char *q = e.text; *q; q++)
                h = mix(h, (unsigned char)*q);
            continue;
        }
        h = mix(h, cg_hl7_msg_offset(m));
        h = mix(h, cg_hl7_msg_bytes(m).len);
        h = mix(h, cg_hl7_msg_wrapped(m));
        for (uint32_t s = 0; s < cg_hl7_seg_count(m); s++) {
            cg_slice_t sb = cg_hl7_seg_bytes(m, s);
            h = mix(h, (uint64_t)(sb.ptr - (const char *)data));
            h = mix(h, sb.len);
            uint32_t nf = cg_hl7_field_count(m, s);
            h = mix(h, nf);
            for (uint32_t f = 0; f <= nf; f++) {
                uint32_t nr = cg_hl7_rep_count(m, s, f);
                for (uint32_t rp = 1; rp <= nr; rp++) {
                    uint32_t nc = cg_hl7_comp_count(m, s, f, rp);
                    for (uint32_t c = 1; c <= nc; c++) {
                        uint32_t ns = cg_hl7_sub_count(m, s, f, rp, c);
                        for (uint32_t k = 1; k <= ns; k++) {
                            cg_slice_t v = {NULL, 0};
                            int got = cg_hl7_get_raw(m, s, f, rp, c, k, &v);
                            h = mix(h, (uint64_t)got);
                            h = mix(h, got ? (uint64_t)(v.ptr - (const char *)data) : 0);
                            h = mix(h, v.len);
                        }
                    }
                }
            }
        }
    }
    return h;
}

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
        cg_error_t e;
        char loc[512];
        cg_hl7_reader_init(&r, (const char *)data, size);
        while (cg_hl7_reader_more(&r)) {
            if (cg_hl7_reader_next(&r, mm, &e) != CG_OK) {
                cg_error_format(&e, loc, sizeof(loc));
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
                                        cg_error_format(&e, loc, sizeof(loc));
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
    /* the two scanners index alike (the same table-driven checks in test_hl7_scan, on any input) */
    for (int pass = 0; pass < 2; pass++) { /* single-byte text, and double-byte (GB 18030) */
        cg_hl7_msg_t *mm = pass ? mgb : m;
        uint64_t wide = fingerprint(mm, data, size);
        cg_hl7__force_portable(1);
        uint64_t portable = fingerprint(mm, data, size);
        cg_hl7__force_portable(0);
        if (wide != portable)
            abort();
    }
    return 0;
}
