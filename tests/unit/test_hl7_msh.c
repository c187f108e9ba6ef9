/* test_hl7_msh.c - cg_hl7_msh_peek: the router's quick look at MSH. */
#include "test_hl7_util.h"

static void peek_ok(const char *buf, size_t len, const char *type, const char *ctl)
{
    cg_hl7_msh_t h;
    char err[256];
    assert_int_equal(cg_hl7_msh_peek(buf, len, &h, err, sizeof(err)), CG_OK);
    assert_int_equal(h.field_sep, '|');
    assert_int_equal(h.message_type.len, strlen(type));
    assert_memory_equal(h.message_type.ptr, type, strlen(type));
    assert_int_equal(h.control_id.len, strlen(ctl));
    assert_memory_equal(h.control_id.ptr, ctl, strlen(ctl));
}

#define MSH "MSH|^~\\&|APP|FAC|RCV|RFAC|20240314||ORU^R01|CTL1|P|2.5.1\r"

static void test_plain(void **state)
{
    (void)state;
    peek_ok(MSH "PID|1\r", sizeof(MSH "PID|1\r") - 1, "ORU^R01", "CTL1");
    cg_hl7_msh_t h;
    char err[128];
    cg_hl7_msh_peek(MSH, sizeof(MSH) - 1, &h, err, sizeof(err));
    assert_int_equal(h.msh_offset, 0);
    assert_int_equal(h.version.len, 5);
    assert_memory_equal(h.sending_app.ptr, "APP", 3);
    assert_memory_equal(h.encoding.ptr, "^~\\&", 4);
}

static void test_bom_mllp_lf(void **state)
{
    (void)state;
    const char bom[] = "\xEF\xBB\xBF" MSH;
    peek_ok(bom, sizeof(bom) - 1, "ORU^R01", "CTL1");
    const char mllp[] = "\x0b" MSH "\x1c\r";
    peek_ok(mllp, sizeof(mllp) - 1, "ORU^R01", "CTL1");
    const char lf[] = "MSH|^~\\&|A|B|C|D|1||ADT^A01|X9|P|2.3\nPID|1\n";
    peek_ok(lf, sizeof(lf) - 1, "ADT^A01", "X9");
    cg_hl7_msh_t h;
    char err[128];
    assert_int_equal(cg_hl7_msh_peek(mllp, sizeof(mllp) - 1, &h, err, sizeof(err)), CG_OK);
    assert_int_equal(h.msh_offset, 1);
}

static void test_batch_headers(void **state)
{
    (void)state;
    const char b[] = "FHS|^~\\&|X\rBHS|^~\\&|Y\r" MSH "BTS|1\rFTS|1\r";
    peek_ok(b, sizeof(b) - 1, "ORU^R01", "CTL1");
}

static void test_not_hl7(void **state)
{
    (void)state;
    cg_hl7_msh_t h;
    char err[128];
    const char *junk[] = {"", "hello world", "<?xml version=\"1.0\"?><ClinicalDocument/>",
                          "PID|1||X\r", "\x00\x01\x02"};
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
        assert_int_equal(cg_hl7_msh_peek(junk[i], strlen(junk[i]), &h, err, sizeof(err)),
                         CG_ERR_NOT_HL7);
    assert_non_null(strstr(err, "no MSH"));
    assert_int_equal(cg_hl7_msh_peek("MSH|", 4, &h, err, sizeof(err)), CG_ERR_HL7_SYNTAX);
    assert_int_equal(cg_hl7_msh_peek("MSHA^~\\&|x|y", 12, &h, err, sizeof(err)), CG_ERR_HL7_SYNTAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_bom_mllp_lf),
        cmocka_unit_test(test_batch_headers),
        cmocka_unit_test(test_not_hl7),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
