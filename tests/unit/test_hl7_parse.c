/* test_hl7_parse.c - message splitting and the structural index, on the fixtures in
 * tests/fixtures/hl7 and on small inline messages. */
#include "test_hl7_util.h"

static cg_hl7_msg_t *parse_fixture(const char *name, char **buf)
{
    size_t len;
    *buf = th_fixture(name, &len);
    cg_hl7_msg_t *m = cg_hl7_msg_new(NULL);
    cg_error_t e;
    if (cg_hl7_parse(m, *buf, len, &e) != CG_OK)
        fail_msg("%s: message %zu: %s", name, e.message, e.text);
    return m;
}

static void test_adt_a01(void **state)
{
    (void)state;
    char *buf;
    cg_hl7_msg_t *m = parse_fixture("adt_a01.hl7", &buf);
    assert_int_equal(cg_hl7_seg_count(m), 7);
    assert_string_equal(cg_hl7_seg_name(m, 0), "MSH");
    assert_string_equal(cg_hl7_seg_name(m, 2), "PID");
    assert_get(m, "MSH-1", "|");
    assert_get(m, "MSH-2", "^~\\&");
    assert_get(m, "MSH-3", "ADT1");
    assert_get(m, "MSH-9", "ADT^A01^ADT_A01");
    assert_get(m, "MSH-9.2", "A01");
    assert_get(m, "MSH-10", "MSG00001");
    assert_get(m, "PID-3", "PATID1234^^^GHH^MR");
    assert_get(m, "PID-3[2].1", "987654321");
    assert_get(m, "PID-3[*].1", "PATID1234~987654321");
    assert_get(m, "PID-5.1", "EVERYWOMAN");
    assert_get(m, "PID-5[2].1", "SMITH");
    assert_get(m, "PID-11.3", "STATESVILLE");
    assert_get(m, "AL1-3.2", "PENICILLIN");
    assert_get(m, "PID-2", "");
    assert_no_match(m, "PID-3[3]");
    assert_no_match(m, "PID-99");
    assert_no_match(m, "ZZZ-1");
    /* counts: PID-3 has 2 repetitions of 5 components; empty fields still exist */
    assert_int_equal(cg_hl7_rep_count(m, 2, 3), 2);
    assert_int_equal(cg_hl7_comp_count(m, 2, 3, 1), 5);
    assert_int_equal(cg_hl7_sub_count(m, 2, 3, 1, 1), 1);
    assert_int_equal(cg_hl7_rep_count(m, 2, 2), 1);
    assert_int_equal(cg_hl7_field_count(m, 0), 12);
    assert_int_equal(cg_hl7_field_count(m, 2), 20);
    cg_hl7_msg_destroy(m);
    free(buf);
}

static void test_message_types(void **state)
{
    (void)state;
    static const struct {
        const char *file, *type, *ctl, *path, *value;
    } cases[] = {
        {"adt_a03.hl7", "ADT^A03^ADT_A03", "MSG00003", "PV1-43", "20240320080000"},
        {"adt_a08.hl7", "ADT^A08^ADT_A01", "MSG00008", "PID-11.1", "44 NEW ADDRESS ST"},
        {"adt_a40.hl7", "ADT^A40^ADT_A39", "MSG00040", "MRG-1[2].1", "OLD42"},
        {"orm_o01.hl7", "ORM^O01^ORM_O01", "MSG00200", "OBR-4.1", "24331-1"},
        {"rde_o11.hl7", "RDE^O11^RDE_O11", "MSG00300", "RXE-2.2", "Metformin 500 MG Oral Tablet"},
        {"vxu_v04.hl7", "VXU^V04^VXU_V04", "MSG00400", "RXA-5.1", "208"},
        {"lf_endings.hl7", "ORU^R01", "LF0001", "OBX-5", "98"},
        {"mixed_endings.hl7", "ORU^R01", "MIX0001", "OBX-6", "mg/dL"},
        {"bom.hl7", "ADT^A01", "BOM0001", "PID-5.2",
         "B\xc3\x89"
         "A"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *buf;
        cg_hl7_msg_t *m = parse_fixture(cases[i].file, &buf);
        assert_get(m, "MSH-9", cases[i].type);
        assert_get(m, "MSH-10", cases[i].ctl);
        assert_get(m, cases[i].path, cases[i].value);
        cg_hl7_msg_destroy(m);
        free(buf);
    }
}

static void test_oru_many_obx(void **state)
{
    (void)state;
    char *buf;
    cg_hl7_msg_t *m = parse_fixture("oru_r01.hl7", &buf);
    assert_get(m, "OBX[*]-1", "1~2~3~4~5~6~7~8~9~10~11~12");
    assert_get(m, "OBX[3]-5", "3.3");
    assert_get(m, "OBX-3.1", "1001-1");
    assert_get(m, "NTE[*]-1", "1~1~2~3");
    assert_get(m, "NTE[2]-3", "Comment for result 4\nsecond line");
    assert_get(m, "OBR[2]-4.2", "Hemoglobin A1c");
    /* cursor: OBX-5 for "this OBX", its enclosing OBR */
    uint32_t obx10 = CG_HL7_NO_SEG;
    int seen = 0;
    for (uint32_t s = 0; s < cg_hl7_seg_count(m); s++)
        if (!strcmp(cg_hl7_seg_name(m, s), "OBX") && ++seen == 10)
            obx10 = s;
    assert_int_not_equal(obx10, CG_HL7_NO_SEG);
    cg_hl7_path_t p;
    cg_hl7_match_t mt;
    cg_hl7_path_compile(&p, "OBX-5", 5, NULL);
    assert_true(cg_hl7_path_first(m, &p, cg_hl7_scope_at(m, obx10), &mt));
    assert_int_equal(mt.seg, obx10);
    assert_memory_equal(mt.raw.ptr, "10.10", 5);
    cg_hl7_path_compile(&p, "OBR-4.1", 7, NULL);
    assert_true(cg_hl7_path_first(m, &p, cg_hl7_scope_at(m, obx10), &mt));
    assert_memory_equal(mt.raw.ptr, "4548-4", 6);
    assert_int_equal(cg_hl7_seg_prev(m, obx10, "OBR"), mt.seg);
    /* PID from any cursor: the nearest before it */
    cg_hl7_path_compile(&p, "PID-3.1", 7, NULL);
    assert_true(cg_hl7_path_first(m, &p, cg_hl7_scope_at(m, obx10), &mt));
    assert_memory_equal(mt.raw.ptr, "PATID1234", 9);
    /* a range: the OBX children of the second OBR */
    uint32_t obr2 = cg_hl7_seg_prev(m, obx10, "OBR");
    cg_hl7_scope_t sc = {obr2, obr2, cg_hl7_seg_count(m)};
    cg_hl7_path_compile(&p, "OBX[*]-1", 8, NULL);
    cg_hl7_iter_t it;
    cg_hl7_path_begin(&it, m, &p, sc);
    int n = 0;
    while (cg_hl7_path_next(&it, &mt))
        n++;
    assert_int_equal(n, 4);
    /* forward searches in any order agree with a plain scan (the memo only skips known gaps) */
    uint32_t nsegs = cg_hl7_seg_count(m);
    static const char *const names[] = {"NTE", "OBX", "OBR", "SPM", "PID"};
    static const uint32_t order[] = {3, 9, 1, 20, 20, 5, 0, 30, 9, 2, 100, 4, 7, 7, 6};
    for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++)
        for (size_t q = 0; q < sizeof(names) / sizeof(names[0]); q++) {
            uint32_t want = CG_HL7_NO_SEG;
            for (uint32_t x = order[k]; x < nsegs && want == CG_HL7_NO_SEG; x++)
                if (!strcmp(cg_hl7_seg_name(m, x), names[q]))
                    want = x;
            assert_int_equal(cg_hl7_seg_next(m, order[k], names[q]), want);
        }
    cg_hl7_msg_destroy(m);
    free(buf);
}

static void test_custom_delimiters(void **state)
{
    (void)state;
    char *buf;
    cg_hl7_msg_t *m = parse_fixture("custom_delims.hl7", &buf);
    const cg_hl7_delims_t *d = cg_hl7_msg_delims(m);
    assert_int_equal(d->field, '#');
    assert_int_equal(d->comp, '@');
    assert_int_equal(d->rep, '!');
    assert_int_equal(d->esc, '/');
    assert_int_equal(d->sub, '%');
    assert_int_equal(d->trunc, '?');
    assert_get(m, "MSH-1", "#");
    assert_get(m, "MSH-2", "@!/%?");
    assert_get(m, "MSH-9.2", "A01");
    assert_get(m, "PID-3[*].1", "ID1~ID2");
    assert_get(m, "PID-3.4.2", "SUB1");
    assert_get(m, "PID-3.4.3", "SUB2");
    assert_get(m, "PID-5", "DOE@JOHN@ESCAPED#@Q");
    assert_get(m, "PID-5.2", "JOHN@ESCAPED#");
    cg_hl7_msg_destroy(m);
    free(buf);
}

static void test_multi(const char *file, const char *const *ctl, size_t n)
{
    size_t len;
    char *buf = th_fixture(file, &len);
    cg_hl7_msg_t *m = cg_hl7_msg_new(NULL);
    cg_hl7_reader_t r;
    cg_error_t e;
    cg_hl7_reader_init(&r, buf, len);
    size_t i = 0;
    while (cg_hl7_reader_more(&r)) {
        assert_int_equal(cg_hl7_reader_next(&r, m, &e), CG_OK);
        assert_true(i < n);
        assert_get(m, "MSH-10", ctl[i]);
        assert_int_equal(cg_hl7_msg_number(m), i + 1);
        i++;
    }
    assert_int_equal(i, n);
    /* one message expected by cg_hl7_parse */
    assert_int_equal(cg_hl7_parse(m, buf, len, &e), n == 1 ? CG_OK : CG_ERR_HL7_SYNTAX);
    cg_hl7_msg_destroy(m);
    free(buf);
}

static void test_splitting(void **state)
{
    (void)state;
    const char *const mllp[] = {"MLLP001", "MLLP002"};
    test_multi("mllp.hl7", mllp, 2);
    const char *const btb[] = {"BB1", "BB2", "BB3"};
    test_multi("back_to_back.hl7", btb, 3);
}

static void test_batch(void **state)
{
    (void)state;
    size_t len;
    char *buf = th_fixture("batch.hl7", &len);
    cg_hl7_msg_t *m = cg_hl7_msg_new(NULL);
    cg_hl7_reader_t r;
    cg_error_t e;
    cg_hl7_reader_init(&r, buf, len);
    static const struct {
        const char *ctl;
        size_t batch, index;
        const char *bhs10;
    } want[] = {{"B1M1", 1, 1, "batch1"}, {"B1M2", 1, 2, "batch1"}, {"B2M1", 2, 1, "batch2"}};
    for (size_t i = 0; i < 3; i++) {
        assert_true(cg_hl7_reader_more(&r));
        assert_int_equal(cg_hl7_reader_next(&r, m, &e), CG_OK);
        assert_get(m, "MSH-10", want[i].ctl);
        const cg_hl7_batch_t *b = cg_hl7_msg_batch(m);
        assert_int_equal(b->batch_no, want[i].batch);
        assert_int_equal(b->index_in_batch, want[i].index);
        assert_true(b->fhs.len > 0);
        assert_memory_equal(b->fhs.ptr, "FHS|", 4);
        assert_non_null(memmem(b->bhs.ptr, b->bhs.len, want[i].bhs10, strlen(want[i].bhs10)));
        assert_int_equal(cg_hl7_seg_count(m), 2); /* BTS/FTS are not part of a message */
    }
    assert_false(cg_hl7_reader_more(&r));
    assert_int_equal(cg_hl7_reader_end(&r, &e), CG_OK); /* its BTS and FTS counts agree */
    cg_hl7_msg_destroy(m);
    free(buf);
}

/* Reads every message of buf; returns cg_hl7_reader_end's answer (e gets its error). */
static cg_err_t read_all(const char *buf, cg_error_t *e, size_t *n_msgs)
{
    cg_hl7_msg_t *m = cg_hl7_msg_new(NULL);
    cg_hl7_reader_t r;
    cg_hl7_reader_init(&r, buf, strlen(buf));
    *n_msgs = 0;
    while (cg_hl7_reader_more(&r)) {
        cg_error_t me;
        assert_int_equal(cg_hl7_reader_next(&r, m, &me), CG_OK);
        (*n_msgs)++;
    }
    cg_hl7_msg_destroy(m);
    return cg_hl7_reader_end(&r, e);
}

/* BTS-1 and FTS-1 count what a batch and a file hold: a count that disagrees means a message or
 * a batch was lost on the way, and the input is refused whole (all its messages still read). */
static void test_batch_counts(void **state)
{
    (void)state;
#define M(id) "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|" id "|P|2.5\r"
    cg_error_t e;
    size_t n;
    assert_int_equal(read_all("FHS|^~\\&\rBHS|^~\\&\r" M("1") M("2") "BTS|2\rFTS|1\r", &e, &n),
                     CG_OK);
    assert_int_equal(n, 2);
    /* counts are optional */
    assert_int_equal(read_all("BHS|^~\\&\r" M("1") "BTS|\r", &e, &n), CG_OK);
    assert_int_equal(read_all("FHS|^~\\&\r" M("1") "FTS|1\r", &e, &n), CG_OK); /* no BHS */
    const char *lost = "BHS|^~\\&\r" M("1") M("2") "BTS|3\r";
    assert_int_equal(read_all(lost, &e, &n), CG_ERR_HL7_SYNTAX);
    assert_int_equal(n, 2);
    assert_string_equal(e.text,
                        "BTS-1 (batch message count) says 3, but 2 message(s) in the batch came");
    assert_int_equal(e.offset, (size_t)(strstr(lost, "BTS") - lost));
    const char *lost_batch = "FHS|^~\\&\rBHS|^~\\&\r" M("1") "BTS|1\rFTS|2\r";
    assert_int_equal(read_all(lost_batch, &e, &n), CG_ERR_HL7_SYNTAX);
    assert_string_equal(e.text,
                        "FTS-1 (file batch count) says 2, but 1 batch(es) in the file came");
    /* one message in an envelope, as the gateway parses an input */
    cg_hl7_msg_t *m = cg_hl7_msg_new(NULL);
    const char *one = "BHS|^~\\&\r" M("1") "BTS|1\r";
    assert_int_equal(cg_hl7_parse(m, one, strlen(one), &e), CG_OK);
    const char *short1 = "BHS|^~\\&\r" M("1") "BTS|2\r";
    assert_int_equal(cg_hl7_parse(m, short1, strlen(short1), &e), CG_ERR_HL7_SYNTAX);
    assert_non_null(strstr(e.text, "says 2, but 1"));
    cg_hl7_msg_destroy(m);
#undef M
}

static void expect_error(const char *buf, size_t len, const cg_hl7_options_t *o, cg_err_t code,
                         size_t seg, const char *name, int field, size_t offset, const char *why)
{
    cg_hl7_msg_t *m = cg_hl7_msg_new(o);
    cg_error_t e;
    assert_int_equal(cg_hl7_parse(m, buf, len, &e), code);
    assert_int_equal(e.code, code);
    assert_int_equal(e.message, 1);
    assert_int_equal(e.segment, seg);
    assert_string_equal(e.seg_name, name);
    assert_int_equal(e.field, field);
    assert_int_equal(e.offset, offset);
    if (!strstr(e.text, why))
        fail_msg("reason \"%s\" lacks \"%s\"", e.text, why);
    cg_hl7_msg_destroy(m);
}

static void test_truncated_and_garbage(void **state)
{
    (void)state;
    expect_error("MSH", 3, NULL, CG_ERR_HL7_SYNTAX, 1, "MSH", 1, 3, "truncated");
    expect_error("MSH|", 4, NULL, CG_ERR_HL7_SYNTAX, 1, "MSH", 2, 4, "MSH-2");
    expect_error("MSHA^~\\&|", 9, NULL, CG_ERR_HL7_SYNTAX, 1, "MSH", 1, 3, "MSH-1");
    expect_error("MSH|^^\\&|", 9, NULL, CG_ERR_HL7_SYNTAX, 1, "MSH", 2, 5, "repeated");
    expect_error("", 0, NULL, CG_ERR_NOT_HL7, 0, "", 0, 0, "no MSH");
    expect_error("\r\n  \r", 5, NULL, CG_ERR_NOT_HL7, 0, "", 0, 5, "no MSH");
    size_t len;
    char *g = th_fixture("garbage.bin", &len);
    expect_error(g, len, NULL, CG_ERR_NOT_HL7, 0, "", 0, 0, "expected an MSH segment");
    free(g);
    /* A header cut after MSH-2 still decodes: later stages judge missing fields. */
    char *t = th_fixture("truncated.hl7", &len);
    cg_hl7_msg_t *m = cg_hl7_msg_new(NULL);
    cg_error_t e;
    assert_int_equal(cg_hl7_parse(m, t, len, &e), CG_OK);
    assert_get(m, "MSH-2", "^~");
    assert_no_match(m, "MSH-9");
    /* every prefix of a real message decodes or fails cleanly */
    char *a = th_fixture("oru_r01.hl7", &len);
    for (size_t n = 0; n <= len; n++) {
        cg_err_t rc = cg_hl7_parse(m, a, n, &e);
        /* a cut inside MSH-18 names an unknown charset */
        assert_true(rc == CG_OK || rc == CG_ERR_HL7_SYNTAX || rc == CG_ERR_NOT_HL7 ||
                    rc == CG_ERR_CHARSET);
        if (n >= 12 && rc != CG_OK && rc != CG_ERR_CHARSET)
            fail_msg("prefix %zu: %s", n, e.text);
    }
    cg_hl7_msg_destroy(m);
    free(a);
    free(t);
}

static void test_wrapped_lines(void **state)
{
    (void)state;
    size_t len;
    char *buf = th_fixture("bad_segment.hl7", &len);
    /* lenient (default): the odd line continues PID-3 */
    cg_hl7_msg_t *m = cg_hl7_msg_new(NULL);
    cg_hl7_reader_t r;
    cg_error_t e;
    cg_hl7_reader_init(&r, buf, len);
    assert_int_equal(cg_hl7_reader_next(&r, m, &e), CG_OK);
    assert_int_equal(cg_hl7_msg_wrapped(m), 1);
    assert_int_equal(cg_hl7_seg_count(m), 3);
    assert_get(m, "PID-3", "X1\rthis is not a segment");
    assert_get(m, "PV1-1", "1");
    cg_hl7_msg_destroy(m);
    /* strict: an error naming segment 3, and the reader goes on with message 2 */
    cg_hl7_options_t o;
    cg_hl7_options_default(&o);
    o.strict_segments = 1;
    m = cg_hl7_msg_new(&o);
    cg_hl7_reader_init(&r, buf, len);
    assert_int_equal(cg_hl7_reader_next(&r, m, &e), CG_ERR_HL7_SYNTAX);
    assert_int_equal(e.message, 1);
    assert_int_equal(e.segment, 3);
    assert_int_equal(e.offset, 56);
    char loc[400];
    cg_error_format(&e, loc, sizeof(loc));
    assert_non_null(
        strstr(loc, "segment 3, byte 56: a line does not start with a 3-character segment name"));
    assert_null(strstr(loc, "this is not")); /* the line may be free text: never quoted */
    assert_true(cg_hl7_reader_more(&r));
    assert_int_equal(cg_hl7_reader_next(&r, m, &e), CG_OK);
    assert_int_equal(cg_hl7_msg_number(m), 2);
    assert_get(m, "MSH-10", "GOOD2");
    cg_hl7_msg_destroy(m);
    free(buf);
}

static void test_limits(void **state)
{
    (void)state;
    cg_hl7_options_t o;
    const char msg[] = "MSH|^~\\&|A|B|C|D|1||ADT^A01|L1|P|2.5\rPID|1|2|3|4|5\rOBX|1~2~3~4\r"
                       "NTE|1\rNTE|2\r";
    cg_hl7_options_default(&o);
    o.max_fields = 4;
    expect_error(msg, sizeof(msg) - 1, &o, CG_ERR_HL7_LIMIT, 1, "MSH", 5, 13, "more than 4 fields");
    o.max_fields = 12;
    o.max_reps = 3;
    /* PID-13 starts at byte 37 + 31 */
    const char msg2[] =
        "MSH|^~\\&|A|B|C|D|1||ADT^A01|L1|P|2.5\rPID|1|2|3|4|5|6|7|8|9|10|11|12|13\r";
    expect_error(msg2, sizeof(msg2) - 1, &o, CG_ERR_HL7_LIMIT, 2, "PID", 13, 68,
                 "more than 12 fields");
    cg_hl7_options_default(&o);
    o.max_reps = 3;
    expect_error(msg, sizeof(msg) - 1, &o, CG_ERR_HL7_LIMIT, 3, "OBX", 1, 61,
                 "more than 3 repetitions");
    cg_hl7_options_default(&o);
    o.max_segments = 4;
    expect_error(msg, sizeof(msg) - 1, &o, CG_ERR_HL7_LIMIT, 5, "NTE", 0, 69,
                 "more than 4 segments");
    cg_hl7_options_default(&o);
    o.max_message_bytes = 40;
    expect_error(msg, sizeof(msg) - 1, &o, CG_ERR_HL7_LIMIT, 2, "PID", 0, 40, "limit of 40");
    o.max_message_bytes = sizeof(msg) - 2; /* exactly the message without its last \r */
    cg_hl7_msg_t *m = cg_hl7_msg_new(&o);
    cg_error_t e;
    assert_int_equal(cg_hl7_parse(m, msg, sizeof(msg) - 1, &e), CG_OK);
    cg_hl7_msg_destroy(m);
    /* a pathological line: 1 MB of separators is linear work and a clean limit error */
    size_t big = 1 << 20;
    char *p = malloc(big + 64);
    memcpy(p, "MSH|^~\\&|A\rOBX|", 15);
    memset(p + 15, '|', big);
    cg_hl7_options_default(&o);
    expect_error(p, big + 15, &o, CG_ERR_HL7_LIMIT, 2, "OBX", 1001, 1015, "more than 1000");
    memset(p + 15, '~', big);
    expect_error(p, big + 15, &o, CG_ERR_HL7_LIMIT, 2, "OBX", 1, 10015, "repetitions");
    free(p);
    /* invalid options are refused */
    o.max_message_bytes = 0;
    assert_null(cg_hl7_msg_new(&o));
}

static void test_reuse_and_resync(void **state)
{
    (void)state;
    /* junk between messages is one error; the next message still decodes */
    const char in[] = "MSH|^~\\&|A|B|C|D|1||ADT^A01|R1|P|2.5\rPID|1\r\r"
                      "garbage line\rmore\r"
                      "MSH|^~\\&|A|B|C|D|1||ADT^A01|R2|P|2.5\rPID|2\r";
    cg_hl7_msg_t *m = cg_hl7_msg_new(NULL);
    cg_hl7_reader_t r;
    cg_error_t e;
    cg_hl7_reader_init(&r, in, sizeof(in) - 1);
    assert_int_equal(cg_hl7_reader_next(&r, m, &e), CG_OK);
    /* lenient mode folds the junk into PID-1; check the raw layout instead */
    assert_get(m, "MSH-10", "R1");
    assert_int_equal(cg_hl7_msg_wrapped(m), 2);
    assert_int_equal(cg_hl7_reader_next(&r, m, &e), CG_OK);
    assert_get(m, "MSH-10", "R2");
    assert_false(cg_hl7_reader_more(&r));
    /* junk before a message */
    const char in2[] = "hello\rMSH|^~\\&|A|B|C|D|1||ADT^A01|R3|P|2.5\r";
    cg_hl7_reader_init(&r, in2, sizeof(in2) - 1);
    assert_int_equal(cg_hl7_reader_next(&r, m, &e), CG_ERR_NOT_HL7);
    assert_int_equal(e.message, 1);
    assert_int_equal(cg_hl7_reader_next(&r, m, &e), CG_OK);
    assert_int_equal(cg_hl7_msg_number(m), 2);
    assert_get(m, "MSH-10", "R3");
    cg_hl7_msg_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adt_a01),          cmocka_unit_test(test_message_types),
        cmocka_unit_test(test_oru_many_obx),     cmocka_unit_test(test_custom_delimiters),
        cmocka_unit_test(test_splitting),        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_batch_counts),     cmocka_unit_test(test_truncated_and_garbage),
        cmocka_unit_test(test_wrapped_lines),    cmocka_unit_test(test_limits),
        cmocka_unit_test(test_reuse_and_resync),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
