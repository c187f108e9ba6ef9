/* test_mllp.c - MLLP framing, the MSH an acknowledgement reads and the acknowledgement itself
 * (cg_mllp.h), and the resend cache; no network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cg_mllp.h"
#include "mllp/mllp_int.h"

/* Feeds s in pieces of size piece; collects the frames as "content|content|". */
static void feed_all(cg_mllp_framer_t *f, const char *s, size_t len, size_t piece, char *out,
                     size_t out_size, int *too_big)
{
    size_t o = 0;
    *too_big = 0;
    out[0] = '\0';
    for (size_t at = 0; at < len;) {
        size_t n = len - at < piece ? len - at : piece;
        size_t off = 0;
        while (off < n) {
            size_t used = 0;
            cg_mllp_event_t ev = cg_mllp_framer_feed(f, s + at + off, n - off, &used);
            off += used;
            if (ev == CG_MLLP_TOO_BIG) {
                *too_big = 1;
                return;
            }
            if (ev == CG_MLLP_FRAME)
                o += (size_t)snprintf(out + o, out_size - o, "%.*s|", (int)f->frame.len,
                                      f->frame.data ? f->frame.data : "");
        }
        at += n;
    }
}

static void test_frames_in_any_pieces(void **state)
{
    (void)state;
    static const char s[] = "junk\x0b"
                            "MSH|a\r\x1c\r"
                            "\r\n\x0b"
                            "MSH|b\rPID|1\r\x1c\r"
                            "\x0b\x1c\r"; /* an empty frame */
    for (size_t piece = 1; piece <= sizeof(s); piece++) {
        cg_mllp_framer_t f;
        cg_mllp_framer_init(&f, 1024);
        char out[256];
        int big;
        feed_all(&f, s, sizeof(s) - 1, piece, out, sizeof(out), &big);
        assert_false(big);
        assert_string_equal(out, "MSH|a\r|MSH|b\rPID|1\r||");
        assert_int_equal(f.frames, 3);
        assert_int_equal(f.junk, 4 + 2); /* "junk" and the CR LF between frames */
        assert_false(cg_mllp_framer_in_frame(&f));
        cg_mllp_framer_free(&f);
    }
}

static void test_restart_missing_cr_and_size(void **state)
{
    (void)state;
    cg_mllp_framer_t f;
    cg_mllp_framer_init(&f, 8);
    char out[256];
    int big;
    /* a start byte inside a frame abandons it; an end byte without CR still ends one */
    static const char s[] = "\x0bMSH|x\x0bMSH|y\x1c\x0bMSH|z\x1c\r";
    feed_all(&f, s, sizeof(s) - 1, 3, out, sizeof(out), &big);
    assert_string_equal(out, "MSH|y|MSH|z|");
    assert_int_equal(f.junk, 6); /* the abandoned "MSH|x" and its start byte */
    /* larger than max_bytes: reported, whatever the pieces */
    feed_all(&f,
             "\x0b"
             "0123456789",
             11, 4, out, sizeof(out), &big);
    assert_true(big);
    cg_mllp_framer_free(&f);
    /* a frame that never ends is in a frame (the read timeout's case) */
    cg_mllp_framer_init(&f, 64);
    feed_all(&f, "\x0bMSH|", 5, 5, out, sizeof(out), &big);
    assert_true(cg_mllp_framer_in_frame(&f));
    cg_mllp_framer_free(&f);
}

static const char ADT[] =
    "MSH|^~\\&|SENDAPP|SENDFAC|RECVAPP|RECVFAC|20240314120000||ADT^A01^ADT_A01|"
    "MSG00042|P|2.5.1|||||CHN|UNICODE UTF-8\r"
    "EVN|A01|20240314120000\r"
    "PID|1||12345^^^HOSP&1.2.3&ISO^MR||DOE^JOHN\r";

static void test_msh_and_original_ack(void **state)
{
    (void)state;
    cg_hl7_msg_t *m = cg_hl7_msg_new(NULL);
    cg_mllp_msh_t h;
    cg_error_t err;
    assert_int_equal(cg_mllp_msh_read(m, ADT, sizeof(ADT) - 1, &h, &err), CG_OK);
    assert_true(h.parsed);
    assert_true(cg_slice_eq(h.fld[10], "MSG00042"));
    assert_true(cg_slice_eq(h.trigger, "A01"));
    assert_true(cg_slice_eq(h.pid_id, "12345"));
    assert_true(cg_slice_eq(h.pid_authority, "HOSP&1.2.3&ISO"));
    assert_false(cg_mllp_msh_enhanced(&h));
    assert_true(cg_mllp_msh_wants_ack(&h, 1));
    cg_buf_t b;
    cg_buf_init(&b);
    assert_int_equal(cg_mllp_ack_build(&h, CG_MLLP_ACK_OK, NULL, "CG1", 0, 0, &b), CG_OK);
    assert_int_equal(b.len,
                     strlen("MSH|^~\\&|RECVAPP|RECVFAC|SENDAPP|SENDFAC|19700101000000+0000||"
                            "ACK^A01^ACK|CG1|P|2.5.1||||||UNICODE UTF-8\rMSA|AA|MSG00042\r"));
    assert_memory_equal(b.data,
                        "MSH|^~\\&|RECVAPP|RECVFAC|SENDAPP|SENDFAC|19700101000000+0000||"
                        "ACK^A01^ACK|CG1|P|2.5.1||||||UNICODE UTF-8\rMSA|AA|MSG00042\r",
                        b.len);
    /* framed, and a rejection with a reason whose separators cannot break the segment */
    cg_buf_reset(&b);
    assert_int_equal(
        cg_mllp_ack_build(&h, CG_MLLP_ACK_REJECTED, "not stored: a|b^c", "CG2", 0, 1, &b), CG_OK);
    assert_int_equal(b.data[0], CG_MLLP_SB);
    assert_int_equal(b.data[b.len - 2], CG_MLLP_EB);
    assert_int_equal(b.data[b.len - 1], CG_MLLP_CR);
    assert_non_null(strstr(b.data, "\rMSA|AR|MSG00042|not stored: a b c\r"
                                   "ERR|||207^Application internal error^HL70357|E\r"));
    cg_buf_free(&b);
    cg_hl7_msg_destroy(m);
}

static void test_enhanced_and_other_separators(void **state)
{
    (void)state;
    static const char msg[] = "MSH#:~\\@#LAB##HIS#WARD#20240101##ORU:R01#77#T#2.3#1##AL#NE\r"
                              "PID#1##9:::AUTH\r";
    cg_hl7_msg_t *m = cg_hl7_msg_new(NULL);
    cg_mllp_msh_t h;
    cg_error_t err;
    assert_int_equal(cg_mllp_msh_read(m, msg, sizeof(msg) - 1, &h, &err), CG_OK);
    assert_true(cg_mllp_msh_enhanced(&h));
    assert_string_equal(cg_mllp_ack_code(&h, CG_MLLP_ACK_OK), "CA");
    assert_string_equal(cg_mllp_ack_code(&h, CG_MLLP_ACK_ERROR), "CE");
    cg_buf_t b;
    cg_buf_init(&b);
    cg_mllp_ack_build(&h, CG_MLLP_ACK_OK, NULL, "X9", 0, 0, &b);
    cg_buf_putc(&b, '\0');
    assert_string_equal(b.data, "MSH#:~\\@#HIS#WARD#LAB##19700101000000+0000##ACK:R01:ACK#X9#T#2.3"
                                "\rMSA#CA#77\r");
    cg_buf_free(&b);
    /* MSH-15 NE: no accept acknowledgement at all; SU and ER by outcome */
    cg_mllp_msh_t ne = h;
    ne.fld[15] = (cg_slice_t){"NE", 2};
    assert_false(cg_mllp_msh_wants_ack(&ne, 1));
    ne.fld[15] = (cg_slice_t){"ER", 2};
    assert_false(cg_mllp_msh_wants_ack(&ne, 1));
    assert_true(cg_mllp_msh_wants_ack(&ne, 0));
    cg_hl7_msg_destroy(m);
}

static void test_undecodable_still_answered(void **state)
{
    (void)state;
    /* a segment name the decoder refuses after a good MSH: the MSH is split by hand */
    static const char bad[] = "MSH|^~\\&|A|B|C|D|20240101||ADT^A08|ID7|P|2.3\r1X\xff|junk\r";
    cg_hl7_options_t o;
    cg_hl7_options_default(&o);
    o.strict_segments = 1;
    cg_hl7_msg_t *m = cg_hl7_msg_new(&o);
    cg_mllp_msh_t h;
    cg_error_t err;
    assert_int_not_equal(cg_mllp_msh_read(m, bad, sizeof(bad) - 1, &h, &err), CG_OK);
    assert_true(h.found);
    assert_false(h.parsed);
    assert_true(cg_slice_eq(h.fld[10], "ID7"));
    assert_true(cg_slice_eq(h.trigger, "A08"));
    cg_buf_t b;
    cg_buf_init(&b);
    cg_mllp_ack_build(&h, CG_MLLP_ACK_ERROR, "does not decode", "CG3", 0, 0, &b);
    cg_buf_putc(&b, '\0');
    assert_non_null(strstr(b.data, "|C|D|A|B|"));
    assert_non_null(strstr(b.data, "\rMSA|AE|ID7|does not decode\rERR|^^^102&Data type error&"
                                   "HL70357\r"));
    /* no MSH at all: an acknowledgement with the default separators and no MSA-2 */
    assert_int_not_equal(cg_mllp_msh_read(m, "hello", 5, &h, &err), CG_OK);
    assert_false(h.found);
    cg_buf_reset(&b);
    cg_mllp_ack_build(&h, CG_MLLP_ACK_ERROR, NULL, "CG4", 0, 0, &b);
    cg_buf_putc(&b, '\0');
    assert_non_null(strstr(b.data, "\rMSA|AE|\r"));
    assert_non_null(strstr(b.data, "|ACK^^ACK|CG4||2.5.1\r")); /* MSH-12 is required */
    /* MSH-2 empty or incomplete: the ACK has the default encoding characters, or it could not
     * be read (HAPI's parser refuses an empty MSH-2) */
    static const char no_enc[] = "MSH||A|B|C|D|20240101||ADT^A08|ID8|P|2.5\r";
    static const char short_enc[] = "MSH|^~|A|B|C|D|20240101||ADT^A08|ID9|P|2.5\r";
    const char *const bad_enc[] = {no_enc, short_enc};
    for (int i = 0; i < 2; i++) {
        cg_mllp_msh_read(m, bad_enc[i], strlen(bad_enc[i]), &h, &err);
        assert_true(h.found);
        cg_buf_reset(&b);
        cg_mllp_ack_build(&h, CG_MLLP_ACK_ERROR, "does not decode", "CG5", 0, 0, &b);
        cg_buf_putc(&b, '\0');
        assert_true(!strncmp(b.data, "MSH|^~\\&|C|D|A|B|", 17));
        assert_non_null(strstr(b.data, "|ACK^A08^ACK|CG5|"));
        assert_non_null(strstr(b.data, i ? "\rMSA|AE|ID9|" : "\rMSA|AE|ID8|"));
    }
    cg_buf_free(&b);
    cg_hl7_msg_destroy(m);
}

/* A batch in one frame: answered with a batch of ACKs, one per message with its MSH-10 (AE for
 * the one that does not decode), BHS-12 = the batch's BHS-11, FHS-12 = its FHS-11, BTS-1 the
 * count; a batch whose BTS count disagrees, or one not stored, is answered AE/AR throughout. */
static void test_batch_acknowledged_per_message(void **state)
{
    (void)state;
    static const char batch[] =
        "FHS|^~\\&|LIS|LAB|CG|CG|20240101000000||||FILE7\r"
        "BHS|^~\\&|LIS|LAB|CG|CG|20240101000000||||BATCH9\r"
        "MSH|^~\\&|LIS|LAB|CG|CG|20240101000000||ORU^R01|M1|P|2.5.1\rPID|1||1^^^H^MR\r"
        "MSH|^~\\&|LIS|LAB|CG|CG|20240101000000||ORU^R01|M2|P|2.5.1\rPID|1||2^^^H^MR\r"
        "MSH|^~\\&|LIS|LAB|CG|CG|20240101000000||ORU^R01|M3|P|2.5.1\r\x01\x02 not a segment\r"
        "BTS|3\rFTS|1\r";
    assert_true(cg_mllp_is_batch(batch, sizeof(batch) - 1));
    assert_false(cg_mllp_is_batch(ADT, sizeof(ADT) - 1));
    cg_hl7_options_t o;
    cg_hl7_options_default(&o);
    o.strict_segments = 1; /* so that the third message does not decode */
    cg_hl7_msg_t *m = cg_hl7_msg_new(&o);
    cg_buf_t base, ack;
    cg_buf_init(&base);
    cg_buf_init(&ack);
    size_t n = 0;
    cg_error_t err;
    assert_int_equal(cg_mllp_batch_scan(m, batch, sizeof(batch) - 1, &base, &n, &err), CG_OK);
    assert_int_equal(n, 3);
    assert_int_equal(
        cg_mllp_batch_ack_build(base.data, base.len, CG_MLLP_ACK_OK, NULL, "CGB", 0, &ack), CG_OK);
    cg_buf_putc(&ack, '\0');
    const char *a = ack.data;
    assert_int_equal(a[0], CG_MLLP_SB);
    assert_non_null(strstr(a, "FHS|^~\\&|CG|CG|LIS|LAB|19700101000000+0000||||CGB|FILE7\r"));
    assert_non_null(strstr(a, "BHS|^~\\&|CG|CG|LIS|LAB|19700101000000+0000||||CGB|BATCH9\r"));
    assert_non_null(strstr(a, "ACK^R01^ACK|CGB-1|"));
    assert_non_null(strstr(a, "\rMSA|AA|M1\r"));
    assert_non_null(strstr(a, "\rMSA|AA|M2\r"));
    assert_non_null(strstr(a, "\rMSA|AE|M3|the message does not decode\r"));
    assert_non_null(strstr(a, "\rBTS|3\rFTS|1\r\x1c\r"));
    /* not stored: every message AR with the reason */
    cg_buf_reset(&ack);
    assert_int_equal(cg_mllp_batch_ack_build(base.data, base.len, CG_MLLP_ACK_REJECTED,
                                             "not stored", "CGC", 0, &ack),
                     CG_OK);
    cg_buf_putc(&ack, '\0');
    assert_non_null(strstr(ack.data, "\rMSA|AR|M1|not stored\r"));
    assert_non_null(strstr(ack.data, "\rMSA|AR|M3|not stored\r"));
    /* a BTS count that disagrees: the scan says so */
    static const char lost[] =
        "BHS|^~\\&|LIS|LAB|CG|CG|20240101000000||||B2\r"
        "MSH|^~\\&|LIS|LAB|CG|CG|20240101000000||ORU^R01|M4|P|2.5.1\rPID|1||4^^^H^MR\r"
        "BTS|2\r";
    cg_buf_reset(&base);
    assert_int_equal(cg_mllp_batch_scan(m, lost, sizeof(lost) - 1, &base, &n, &err),
                     CG_ERR_HL7_SYNTAX);
    assert_int_equal(n, 1);
    cg_buf_reset(&ack);
    assert_int_equal(cg_mllp_batch_ack_build(base.data, base.len, CG_MLLP_ACK_ERROR,
                                             "BTS-1 disagrees", "CGD", 0, &ack),
                     CG_OK);
    cg_buf_putc(&ack, '\0');
    assert_non_null(strstr(ack.data, "BHS|^~\\&|CG|CG|LIS|LAB|19700101000000+0000||||CGD|B2\r"));
    assert_non_null(strstr(ack.data, "\rMSA|AE|M4|BTS-1 disagrees\r"));
    assert_non_null(strstr(ack.data, "\rBTS|1\r\x1c"));
    assert_null(strstr(ack.data, "FTS"));
    cg_buf_free(&base);
    cg_buf_free(&ack);
    cg_hl7_msg_destroy(m);
}

static void test_dedup_window_and_bound(void **state)
{
    (void)state;
    mllp_dedup_t *d = mllp_dedup_new(4, 1000);
    unsigned char id[8][32], a[32], b[32];
    memset(a, 'a', 32);
    memset(b, 'b', 32);
    for (int i = 0; i < 8; i++)
        memset(id[i], i + 1, 32);
    assert_int_equal(mllp_dedup_check(d, id[0], a, 0), MLLP_DEDUP_NEW);
    mllp_dedup_put(d, id[0], a, 0);
    assert_int_equal(mllp_dedup_check(d, id[0], a, 500), MLLP_DEDUP_SAME);
    assert_int_equal(mllp_dedup_check(d, id[0], b, 500), MLLP_DEDUP_REUSED_ID);
    assert_int_equal(mllp_dedup_check(d, id[0], a, 1001), MLLP_DEDUP_NEW); /* past the window */
    for (int i = 1; i < 5; i++) /* four more: the first makes room */
        mllp_dedup_put(d, id[i], a, 10);
    assert_int_equal(mllp_dedup_check(d, id[0], a, 20), MLLP_DEDUP_NEW);
    for (int i = 1; i < 5; i++)
        assert_int_equal(mllp_dedup_check(d, id[i], a, 20), MLLP_DEDUP_SAME);
    mllp_dedup_destroy(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames_in_any_pieces),
        cmocka_unit_test(test_restart_missing_cr_and_size),
        cmocka_unit_test(test_msh_and_original_ack),
        cmocka_unit_test(test_enhanced_and_other_separators),
        cmocka_unit_test(test_undecodable_still_answered),
        cmocka_unit_test(test_dedup_window_and_bound),
        cmocka_unit_test(test_batch_acknowledged_per_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
