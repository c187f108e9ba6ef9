/* test_xml.c - the hardened XML decoder (cg_xml.h, mappers/cda/xml.c): well-formed C-CDA, refused
 * limits on attributes, encodings, the C-CDA section kinds, the summary, and one parser reused
 * many times; hostile input is test_xml_hostile.c's. Fixtures: tests/unit/xml. */
#include <dirent.h>
#include <errno.h>
#include <iconv.h>
#include <jansson.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <libxml/globals.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "cg_xml.h"
#include "test_hl7_util.h" /* th_read */
#include "xml_test_util.h"

/* UTF-8 text converted to enc with iconv (malloc'ed, *len bytes). */
static char *to_encoding(const char *utf8, const char *enc, size_t *len)
{
    iconv_t cd = iconv_open(enc, "UTF-8");
    assert_true(cd != (iconv_t)-1);
    size_t inleft = strlen(utf8), cap = inleft * 4 + 16, outleft = cap;
    char *out = malloc(cap), *in = (char *)utf8, *o = out;
    assert_int_not_equal(iconv(cd, &in, &inleft, &o, &outleft), (size_t)-1);
    iconv_close(cd);
    *len = cap - outleft;
    return out;
}

static void test_options_and_location(void **state)
{
    (void)state;
    cg_xml_options_t o;
    memset(&o, 0xff, sizeof(o));
    cg_xml_options_default(&o);
    assert_int_equal(o.max_bytes, (size_t)64 << 20);
    assert_int_equal(o.max_depth, 256);
    assert_null(o.default_encoding);

    cg_error_t e = {
        .code = CG_ERR_XML, .at = CG_ERROR_AT_XML, .line = 3, .column = 7, .text = "boom"};
    char buf[64];
    assert_string_equal(cg_error_format(&e, buf, sizeof(buf)), "line 3, column 7: boom");
    e.column = 0;
    assert_string_equal(cg_error_format(&e, buf, sizeof(buf)), "line 3: boom");
    e.line = 0;
    assert_string_equal(cg_error_format(&e, buf, sizeof(buf)), "boom");
    char small[8];
    e.line = 12;
    assert_string_equal(cg_error_format(&e, small, sizeof(small)), "line 12");
}

static void test_sniff(void **state)
{
    (void)state;
    assert_true(cg_xml_sniff("<a/>", 4));
    assert_true(cg_xml_sniff("\xEF\xBB\xBF<?xml version='1.0'?><a/>", 26));
    assert_true(cg_xml_sniff(" \r\n\t<ClinicalDocument/>", 23));
    assert_true(cg_xml_sniff("\xEF\xBB\xBF\n <a/>", 8));
    assert_false(cg_xml_sniff("MSH|^~\\&|A|B\r", 13));
    assert_false(cg_xml_sniff("\x0bMSH|^~\\&|\r\x1c\r", 14));
    assert_false(cg_xml_sniff("", 0));
    assert_false(cg_xml_sniff(NULL, 0));
    assert_false(cg_xml_sniff("   \n", 4));
    assert_false(cg_xml_sniff("\xEF\xBB\xBF", 3));
    assert_false(cg_xml_sniff("x<a/>", 5));
    assert_false(cg_xml_sniff("<a/>", 0)); /* only len bytes count */
    /* UTF-16, little and big endian, with a BOM and without (appendix F of XML 1.0) */
    assert_true(cg_xml_sniff("\xFF\xFE<\0?\0", 6));
    assert_true(cg_xml_sniff("\xFE\xFF\0<\0?", 6));
    assert_true(cg_xml_sniff("\xFF\xFE \0\n\0<\0", 8));
    assert_true(cg_xml_sniff("<\0?\0x\0", 6));
    assert_true(cg_xml_sniff("\0<\0?\0x", 6));
    assert_false(cg_xml_sniff("\xFF\xFEM\0S\0H\0", 8)); /* HL7 v2 in UTF-16 is not XML */
    assert_false(cg_xml_sniff("\xFF\xFE", 2));
    assert_false(cg_xml_sniff("\xFF\xFE \0", 4));
}

/* An element with more than max_attributes attributes is refused before libxml2 parses it
 * (quadratic there: 80,000 took 22 s); quoted '=', comments, CDATA and PIs do not count. */
static char *attrs_doc(unsigned n, const char *before)
{
    char *s = malloc(64 + 16 * (size_t)n + strlen(before));
    size_t o = (size_t)sprintf(s, "<ClinicalDocument xmlns='urn:hl7-org:v3'>%s\n<id", before);
    for (unsigned i = 0; i < n; i++)
        o += (size_t)sprintf(s + o, " a%u='1'", i);
    strcpy(s + o, "/></ClinicalDocument>");
    return s;
}

static void test_too_many_attributes(void **state)
{
    (void)state;
    cg_xml_doc_t *d = cg_xml_doc_new(NULL);
    cg_error_t e;
    char *ok = attrs_doc(256, ""), *over = attrs_doc(257, "<!-- x='1' -->"),
         *big = attrs_doc(80000, "");
    assert_int_equal(cg_xml_parse(d, ok, strlen(ok), &e), CG_OK); /* 256: at the limit */
    assert_int_equal(cg_xml_parse(d, over, strlen(over), &e), CG_ERR_XML);
    assert_non_null(strstr(e.text, "more than 256 attributes"));
    assert_int_equal(e.line, 2);
    assert_int_equal(cg_xml_parse(d, big, strlen(big), &e), CG_ERR_XML);
    /* a '<' inside a value (not well-formed; libxml2 reads on) does not hide the rest */
    char *hidden = attrs_doc(300, "");
    memcpy(strstr(hidden, "<id") + 3, " x='<' ", 7); /* over " a0='1'" */
    assert_int_equal(cg_xml_parse(d, hidden, strlen(hidden), &e), CG_ERR_XML);
    assert_non_null(strstr(e.text, "more than 256 attributes"));
    free(hidden);
    const char *skipped = "<a><!-- b='1' c='2' d='3' --><![CDATA[<e f='1' g='2' h='3'>]]>"
                          "<?pi i='1' j='2' k='3'?><l m='a=b' n=\"o=p\"/></a>";
    cg_xml_doc_destroy(d);
    cg_xml_options_t o;
    cg_xml_options_default(&o);
    o.max_attributes = 2;
    d = cg_xml_doc_new(&o);
    assert_int_equal(cg_xml_parse(d, skipped, strlen(skipped), &e), CG_OK);
    /* UTF-16 is counted too */
    const char u16[] = "\xFF\xFE<\0a\0 \0x\0=\0'\0'\0 \0y\0=\0'\0'\0 \0z\0=\0'\0'\0/\0>\0";
    assert_int_equal(cg_xml_parse(d, u16, sizeof(u16) - 1, &e), CG_ERR_XML);
    assert_non_null(strstr(e.text, "more than 2 attributes"));
    cg_xml_doc_destroy(d);
    free(ok);
    free(over);
    free(big);
}

static void test_well_formed_cda(void **state)
{
    (void)state;
    size_t len;
    char *buf = xt_fixture("ccda_small.xml", &len);
    cg_xml_doc_t *d = cg_xml_doc_new(NULL);
    assert_non_null(d);
    assert_null(cg_xml_doc_tree(d));
    assert_null(cg_xml_doc_root(d));
    cg_error_t e;
    assert_int_equal(cg_xml_parse(d, buf, len, &e), CG_OK);
    xmlDocPtr doc = cg_xml_doc_tree(d);
    xmlNodePtr root = cg_xml_doc_root(d);
    assert_non_null(doc);
    assert_ptr_equal(root, xmlDocGetRootElement(doc));
    assert_string_equal((const char *)root->name, "ClinicalDocument");
    assert_string_equal((const char *)root->ns->href, "urn:hl7-org:v3");
    assert_string_equal(xt_text_of(d, "given"), "Zo\xc3\xab");
    /* CDATA reads as text; the space between two narrative elements survives */
    assert_string_equal(xt_text_of(d, "td"), "Type 2 diabetes");
    const char *cdata = NULL;
    for (xmlNodePtr n = xmlDocGetRootElement(doc); n;) { /* the second td */
        if (n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, "tr")) {
            xmlChar *id = xmlGetProp(n, (const xmlChar *)"ID");
            int second = id && !strcmp((const char *)id, "prob2");
            xmlFree(id);
            if (second) {
                static char keep[64];
                xmlChar *t = xmlNodeGetContent(n);
                snprintf(keep, sizeof(keep), "%s", (const char *)t);
                xmlFree(t);
                cdata = keep;
                assert_int_equal(n->children->children->type, XML_TEXT_NODE);
                break;
            }
        }
        if (n->children && n->type == XML_ELEMENT_NODE) {
            n = n->children;
            continue;
        }
        while (n && !n->next)
            n = n->parent;
        n = n ? n->next : NULL;
    }
    assert_non_null(cdata);
    assert_string_equal(cdata, "Hypertension & co");
    cg_xml_doc_destroy(d);
    free(buf);
    cg_xml_doc_destroy(NULL);
}

static void test_unbound_prefix_tolerated(void **state)
{
    (void)state;
    /* section snippets often use xsi:type without declaring xsi; the document is still
     * well-formed XML 1.0, only not namespace-well-formed: parsed, prefix kept in the name */
    cg_xml_doc_t *d = cg_xml_doc_new(NULL);
    cg_error_t e;
    assert_int_equal(xt_parse_str(d, "<section><value xsi:type=\"PQ\" value=\"7\"/></section>", &e),
                     CG_OK);
    assert_string_equal((const char *)((xmlNodePtr)cg_xml_doc_root(d))->name, "section");
    cg_xml_doc_destroy(d);
}

static const char chinese[] = "\xe5\xbc\xa0\xe4\xb8\x89";                            /* 张三 */
static const char diagnosis[] = "2\xe5\x9e\x8b\xe7\xb3\x96\xe5\xb0\xbf\xe7\x97\x85"; /* 2型糖尿病 */

static void test_gb18030(void **state)
{
    (void)state;
    char utf8[512];
    snprintf(utf8, sizeof(utf8),
             "<?xml version=\"1.0\" encoding=\"GB18030\"?>\n"
             "<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><name>%s</name>\n"
             "<dx>%s \xe2\x82\xac\xf0\x9f\x98\x80</dx></ClinicalDocument>",
             chinese, diagnosis);
    size_t len;
    char *gb = to_encoding(utf8, "GB18030", &len);
    assert_null(memmem(gb, len, chinese, strlen(chinese))); /* really re-encoded */
    cg_xml_doc_t *d = cg_xml_doc_new(NULL);
    cg_error_t e;
    assert_int_equal(cg_xml_parse(d, gb, len, &e), CG_OK);
    assert_string_equal(xt_text_of(d, "name"), chinese);
    char want[64];
    snprintf(want, sizeof(want), "%s \xe2\x82\xac\xf0\x9f\x98\x80", diagnosis); /* € and 😀 */
    assert_string_equal(xt_text_of(d, "dx"), want);
    free(gb);

    /* GBK declared, GBK bytes */
    snprintf(utf8, sizeof(utf8), "<?xml version='1.0' encoding='GBK'?><name>%s</name>", chinese);
    gb = to_encoding(utf8, "GBK", &len);
    assert_int_equal(cg_xml_parse(d, gb, len, &e), CG_OK);
    assert_string_equal(xt_text_of(d, "name"), chinese);
    free(gb);

    /* no declaration: UTF-8 unless the options name another default */
    snprintf(utf8, sizeof(utf8), "<name>%s</name>", chinese);
    gb = to_encoding(utf8, "GB18030", &len);
    assert_int_equal(cg_xml_parse(d, gb, len, &e), CG_ERR_CHARSET);
    cg_xml_doc_destroy(d);
    cg_xml_options_t o;
    cg_xml_options_default(&o);
    char name[] = "GB18030";
    o.default_encoding = name;
    d = cg_xml_doc_new(&o);
    name[0] = 'X'; /* the doc keeps its own copy */
    assert_int_equal(cg_xml_parse(d, gb, len, &e), CG_OK);
    assert_string_equal(xt_text_of(d, "name"), chinese);
    /* a declaration without encoding still falls back to the default */
    free(gb);
    snprintf(utf8, sizeof(utf8), "<?xml version=\"1.0\"?><name>%s</name>", chinese);
    gb = to_encoding(utf8, "GB18030", &len);
    assert_int_equal(cg_xml_parse(d, gb, len, &e), CG_OK);
    assert_string_equal(xt_text_of(d, "name"), chinese);
    /* ... but a declared encoding or a BOM wins over the default */
    snprintf(utf8, sizeof(utf8), "<?xml version=\"1.0\" encoding=\"UTF-8\"?><name>%s</name>",
             chinese);
    assert_int_equal(xt_parse_str(d, utf8, &e), CG_OK);
    assert_string_equal(xt_text_of(d, "name"), chinese);
    snprintf(utf8, sizeof(utf8), "\xEF\xBB\xBF<name>%s</name>", chinese);
    assert_int_equal(xt_parse_str(d, utf8, &e), CG_OK);
    assert_string_equal(xt_text_of(d, "name"), chinese);
    free(gb);
    cg_xml_doc_destroy(d);

    /* a default nobody knows is an error for undeclared documents only */
    o.default_encoding = "X-NOPE-42";
    d = cg_xml_doc_new(&o);
    assert_non_null(d);
    snprintf(utf8, sizeof(utf8), "<name>%s</name>", chinese);
    assert_int_equal(xt_parse_str(d, utf8, &e), CG_ERR_CHARSET);
    assert_non_null(strstr(e.text, "'X-NOPE-42'"));
    snprintf(utf8, sizeof(utf8), "<?xml version='1.0' encoding='UTF-8'?><name>%s</name>", chinese);
    assert_int_equal(xt_parse_str(d, utf8, &e), CG_OK);
    cg_xml_doc_destroy(d);

    /* default_encoding "UTF-8" is the same as none */
    o.default_encoding = "utf-8";
    d = cg_xml_doc_new(&o);
    snprintf(utf8, sizeof(utf8), "<name>%s</name>", chinese);
    assert_int_equal(xt_parse_str(d, utf8, &e), CG_OK);
    assert_string_equal(xt_text_of(d, "name"), chinese);
    cg_xml_doc_destroy(d);
}

static void test_latin1(void **state)
{
    (void)state;
    cg_xml_doc_t *d = cg_xml_doc_new(NULL);
    cg_error_t e;
    const char doc[] = "<?xml version='1.0' encoding='ISO-8859-1'?>\n"
                       "<patient family=\"M\xfcller\"><given>Ren\xe9\x65</given></patient>";
    assert_int_equal(xt_parse_str(d, doc, &e), CG_OK);
    assert_string_equal(xt_text_of(d, "given"), "Ren\xc3\xa9\x65");
    xmlChar *fam = xmlGetProp(cg_xml_doc_root(d), (const xmlChar *)"family");
    assert_string_equal((const char *)fam, "M\xc3\xbcller");
    xmlFree(fam);
    /* the same bytes undeclared are not UTF-8: an error, not mojibake */
    const char *body = strchr(doc, '\n') + 1;
    assert_int_equal(xt_parse_str(d, body, &e), CG_ERR_CHARSET);
    assert_int_equal(e.line, 1);
    assert_true(e.column > 0);
    assert_non_null(strstr(e.text, "0xFC"));
    cg_xml_doc_destroy(d);
}

static void test_invalid_bytes(void **state)
{
    (void)state;
    cg_xml_doc_t *d = cg_xml_doc_new(NULL);
    cg_error_t e;
    const char *good_doc = "<a>good</a>";
    assert_int_equal(xt_parse_str(d, good_doc, &e), CG_OK);
    void *good = cg_xml_doc_tree(d);
    /* UTF-8 (by default): an invalid sequence on line 3 */
    assert_int_equal(xt_parse_str(d, "<a>\n<b>ok</b>\n<c>x\xC3\x28y</c></a>", &e), CG_ERR_CHARSET);
    assert_int_equal(e.code, CG_ERR_CHARSET);
    assert_int_equal(e.line, 3);
    assert_true(e.column >= 5 && e.column <= 6);
    assert_non_null(strstr(e.text, "bytes not valid in UTF-8 (0xC3 0x28"));
    /* overlong and surrogate encodings too */
    assert_int_equal(xt_parse_str(d, "<a>\xC0\xAF</a>", &e), CG_ERR_CHARSET);
    assert_int_equal(xt_parse_str(d, "<a>\xED\xA0\x80</a>", &e), CG_ERR_CHARSET);

    /* GB18030 declared, 0xFF is never valid there: located by line and character column */
    char utf8[256];
    snprintf(utf8, sizeof(utf8),
             "<?xml version=\"1.0\" encoding=\"GB18030\"?>\n<a>\n  <b>%s@@</b></a>", chinese);
    size_t len;
    char *gb = to_encoding(utf8, "GB18030", &len);
    char *at = memmem(gb, len, "@@", 2);
    at[0] = (char)0xFF, at[1] = (char)0xFF;
    assert_int_equal(cg_xml_parse(d, gb, len, &e), CG_ERR_CHARSET);
    assert_int_equal(e.line, 3);
    assert_int_equal(e.column, 8); /* two spaces, <b>, two characters, then the bad byte */
    assert_non_null(strstr(e.text, "bytes not valid in GB18030 at byte"));
    assert_non_null(strstr(e.text, "0xFF 0xFF"));
    /* a multi-byte sequence cut by the end of the document */
    at[0] = (char)0x81, at[1] = '\0';
    assert_int_equal(cg_xml_parse(d, gb, (size_t)(at - gb) + 1, &e), CG_ERR_CHARSET);
    assert_non_null(strstr(e.text, "truncated GB18030 sequence at the end"));
    free(gb);
    /* ... even after the root element, where libxml2 alone would drop it silently */
    const char tail[] = "<?xml version=\"1.0\" encoding=\"GB18030\"?>\n<a>x</a>\n\x81";
    assert_int_equal(xt_parse_str(d, tail, &e), CG_ERR_CHARSET);
    assert_int_equal(e.line, 3);
    assert_int_equal(cg_xml_parse(d, tail, sizeof(tail) - 2, &e), CG_OK); /* without it */
    assert_int_equal(cg_xml_parse(d, good_doc, strlen(good_doc), &e), CG_OK);
    good = cg_xml_doc_tree(d);
    /* libxml2's own ASCII decoder stops without a word: still a located charset error */
    assert_int_equal(
        xt_parse_str(d, "<?xml version='1.0' encoding='US-ASCII'?>\n<a>x\x80y</a>", &e),
        CG_ERR_CHARSET);
    assert_int_equal(e.line, 2);
    assert_int_equal(e.column, 5);
    assert_non_null(strstr(e.text, "bytes not valid in US-ASCII at byte 46 (0x80"));
    /* an encoding nobody knows */
    assert_int_equal(xt_parse_str(d, "<?xml version='1.0' encoding='X-NOPE-42'?><a/>", &e),
                     CG_ERR_CHARSET);
    assert_non_null(strstr(e.text, "X-NOPE-42"));
    /* a control character in valid UTF-8 is an XML error, not a charset one */
    assert_int_equal(xt_parse_str(d, "<a>\x01</a>", &e), CG_ERR_XML);
    assert_ptr_equal(cg_xml_doc_tree(d), good);
    assert_string_equal(xt_text_of(d, "a"), "good");
    cg_xml_doc_destroy(d);
}

static void test_section_kinds(void **state)
{
    (void)state;
    static const struct {
        const char *name, *roots[3];
    } want[] = {
        {"problems", {"2.16.840.1.113883.10.20.22.2.5", "2.16.840.1.113883.10.20.22.2.5.1"}},
        {"results", {"2.16.840.1.113883.10.20.22.2.3", "2.16.840.1.113883.10.20.22.2.3.1"}},
        {"vital_signs", {"2.16.840.1.113883.10.20.22.2.4", "2.16.840.1.113883.10.20.22.2.4.1"}},
        {"medications", {"2.16.840.1.113883.10.20.22.2.1", "2.16.840.1.113883.10.20.22.2.1.1"}},
        {"encounters", {"2.16.840.1.113883.10.20.22.2.22", "2.16.840.1.113883.10.20.22.2.22.1"}},
        {"allergies", {"2.16.840.1.113883.10.20.22.2.6", "2.16.840.1.113883.10.20.22.2.6.1"}},
        {"immunizations", {"2.16.840.1.113883.10.20.22.2.2", "2.16.840.1.113883.10.20.22.2.2.1"}},
        {"procedures", {"2.16.840.1.113883.10.20.22.2.7", "2.16.840.1.113883.10.20.22.2.7.1"}},
        {"social_history", {"2.16.840.1.113883.10.20.22.2.17"}},
        {"plan_of_treatment", {"2.16.840.1.113883.10.20.22.2.10"}},
    };
    size_t n;
    const cg_xml_section_kind_t *all = cg_xml_section_kinds(&n);
    assert_true(n >= sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const cg_xml_section_kind_t *k = cg_xml_section_kind(want[i].name);
        assert_non_null(k);
        assert_ptr_equal(k, &all[i]); /* the common ones come first, in this order */
        size_t nr = 0;
        while (k->template_roots[nr])
            nr++;
        size_t nw = want[i].roots[1] ? 2 : 1;
        assert_int_equal(nr, nw);
        for (size_t r = 0; r < nw; r++) {
            assert_string_equal(k->template_roots[r], want[i].roots[r]);
            assert_ptr_equal(cg_xml_section_kind_of(want[i].roots[r], strlen(want[i].roots[r])), k);
        }
    }
    /* every root belongs to exactly one kind, names are unique, roots look like OIDs */
    for (size_t i = 0; i < n; i++) {
        assert_non_null(all[i].template_roots[0]);
        assert_ptr_equal(cg_xml_section_kind(all[i].name), &all[i]);
        for (const char *const *r = all[i].template_roots; *r; r++) {
            assert_ptr_equal(cg_xml_section_kind_of(*r, strlen(*r)), &all[i]);
            assert_int_equal(strspn(*r, "0123456789."), strlen(*r));
        }
    }
    /* length-delimited: a root inside a longer buffer, and prefixes that are not roots */
    const char *buf = "2.16.840.1.113883.10.20.22.2.5.1.7";
    assert_ptr_equal(cg_xml_section_kind_of(buf, 30), cg_xml_section_kind("problems"));
    assert_null(cg_xml_section_kind_of(buf, strlen(buf)));
    assert_null(cg_xml_section_kind_of("2.16.840.1.113883.10.20.22.2", 28));
    assert_null(cg_xml_section_kind_of(NULL, 0));
    assert_null(cg_xml_section_kind("nope"));
    assert_null(cg_xml_section_kind(NULL));
    assert_non_null(cg_xml_section_kinds(NULL));
}

static json_t *summary_json(cg_xml_doc_t *d)
{
    cg_buf_t out;
    cg_buf_init(&out);
    cg_buf_puts(&out, "");
    size_t before = out.len;
    assert_int_equal(cg_xml_summary(d, &out), CG_OK);
    assert_true(out.len > before);
    json_error_t je;
    json_t *j = json_loadb(out.data, out.len, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        fail_msg("summary is not valid JSON (%s): %s", je.text, out.data);
    cg_buf_free(&out);
    return j;
}

static void test_summary(void **state)
{
    (void)state;
    size_t len;
    char *buf = xt_fixture("ccda_small.xml", &len);
    cg_xml_doc_t *d = cg_xml_doc_new(NULL);
    cg_buf_t out;
    cg_buf_init(&out);
    assert_int_equal(cg_xml_summary(d, &out), CG_ERR_INVALID_ARG); /* nothing parsed yet */
    cg_buf_free(&out);
    assert_int_equal(cg_xml_parse(d, buf, len, NULL), CG_OK);
    json_t *j = summary_json(d);
    assert_string_equal(json_string_value(json_object_get(j, "root")), "ClinicalDocument");
    assert_string_equal(json_string_value(json_object_get(j, "namespace")), "urn:hl7-org:v3");
    json_t *tids = json_object_get(j, "templateIds");
    assert_int_equal(json_array_size(tids), 2);
    assert_string_equal(json_string_value(json_array_get(tids, 1)),
                        "2.16.840.1.113883.10.20.22.1.2");
    assert_string_equal(json_string_value(json_object_get(j, "id")), "1.2.3.4.5.99^DOC-0001");
    json_t *secs = json_object_get(j, "sections");
    assert_int_equal(json_array_size(secs), 5);
    static const struct {
        const char *kind, *title;
        int entries, ntids;
    } want[] = {
        {"problems", "Miscellaneous notes", 2, 2}, /* the title lies; the templateId does not */
        {"results", "Problems", 1, 1},
        {NULL, "\xe4\xbd\x93\xe5\xbe\x81 vital signs", 0, 1},
        {"vital_signs", "Nested", 3, 1}, /* nested sections follow their parent */
        {"allergies", NULL, 0, 1},
    };
    for (size_t i = 0; i < 5; i++) {
        json_t *s = json_array_get(secs, i);
        json_t *kind = json_object_get(s, "kind"), *title = json_object_get(s, "title");
        if (want[i].kind)
            assert_string_equal(json_string_value(kind), want[i].kind);
        else
            assert_true(json_is_null(kind));
        if (want[i].title)
            assert_string_equal(json_string_value(title), want[i].title);
        else
            assert_true(json_is_null(title));
        assert_int_equal(json_integer_value(json_object_get(s, "entries")), want[i].entries);
        assert_int_equal(json_array_size(json_object_get(s, "templateIds")), want[i].ntids);
        assert_int_equal(json_object_size(s), 4);
    }
    assert_int_equal(json_object_size(j), 5);
    /* key order as documented */
    cg_buf_init(&out);
    cg_xml_summary(d, &out);
    assert_int_equal(strncmp(out.data, "{\"root\":", 8), 0);
    const char *ns = strstr(out.data, "\"namespace\""), *t = strstr(out.data, "\"templateIds\""),
               *id = strstr(out.data, "\"id\""), *sec = strstr(out.data, "\"sections\"");
    assert_true(ns && t && id && sec && ns < t && t < id && id < sec);
    /* appends: existing content stays */
    cg_buf_reset(&out);
    cg_buf_puts(&out, "X");
    cg_xml_summary(d, &out);
    assert_int_equal(out.data[0], 'X');
    assert_int_equal(out.data[1], '{');
    cg_buf_free(&out);
    json_decref(j);

    /* no namespace, no id, id without extension, quotes needing escapes */
    assert_int_equal(xt_parse_str(d,
                                  "<doc><id root=\"1.2\"/><section><title>a \"q\"</title>"
                                  "<entry/></section></doc>",
                                  NULL),
                     CG_OK);
    j = summary_json(d);
    assert_true(json_is_null(json_object_get(j, "namespace")));
    assert_string_equal(json_string_value(json_object_get(j, "id")), "1.2");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(j, "sections"), 0), "title")),
                        "a \"q\"");
    json_decref(j);
    assert_int_equal(xt_parse_str(d, "<x:doc xmlns:x=\"urn:x\"><section/></x:doc>", NULL), CG_OK);
    j = summary_json(d);
    assert_true(json_is_null(json_object_get(j, "id")));
    assert_string_equal(json_string_value(json_object_get(j, "namespace")), "urn:x");
    /* a section outside the root's namespace is not one of its sections */
    assert_int_equal(json_array_size(json_object_get(j, "sections")), 0);
    json_decref(j);
    cg_xml_doc_destroy(d);
    free(buf);
}

static void test_reuse(void **state)
{
    (void)state;
    size_t len;
    char *cda = xt_fixture("ccda_small.xml", &len);
    cg_xml_doc_t *d = cg_xml_doc_new(NULL);
    cg_error_t e;
    char doc[128];
    for (int i = 0; i < 3000; i++) {
        switch (i % 5) {
        case 0:
            assert_int_equal(cg_xml_parse(d, cda, len, &e), CG_OK);
            assert_string_equal(xt_text_of(d, "family"), "Example");
            break;
        case 1: /* distinct names each time: the dictionary grows, results stay right */
            snprintf(doc, sizeof(doc), "<r%d a%d=\"v\"><n%d>%d</n%d></r%d>", i, i, i, i, i, i);
            assert_int_equal(xt_parse_str(d, doc, &e), CG_OK);
            snprintf(doc, sizeof(doc), "n%d", i);
            assert_int_equal(atoi(xt_text_of(d, doc)), i);
            break;
        case 2:
            assert_int_equal(xt_parse_str(d, "<a><b></a>", &e), CG_ERR_XML);
            assert_non_null(cg_xml_doc_tree(d)); /* the previous one stays */
            break;
        case 3:
            assert_int_equal(xt_parse_str(d, "<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>", &e),
                             CG_ERR_XML);
            break;
        case 4:
            assert_int_equal(xt_parse_str(d, "<a>\xff</a>", &e), CG_ERR_CHARSET);
            break;
        }
    }
    cg_xml_doc_destroy(d);
    free(cda);
}

/* Element children of the first element named name, and whether any child is a blank text
 * node. */
static int blank_children(cg_xml_doc_t *d, const char *name)
{
    xmlNodePtr n = xt_element(d, name);
    if (!n)
        return -1;
    int blanks = 0;
    for (xmlNodePtr c = n->children; c; c = c->next)
        blanks += c->type == XML_TEXT_NODE;
    return blanks;
}

/* Indentation between HL7 v3 structural elements is left out of the tree, comments and PIs
 * too; mixed content (names, addresses, narrative, ED values), xml:space="preserve", vendor
 * XML and keep_blank_text keep every text node. */
static void test_blank_text(void **state)
{
    (void)state;
    static const char cda[] =
        "<?xml-stylesheet type=\"text/xsl\" href=\"CDA.xsl\"?>\n"
        "<ClinicalDocument xmlns=\"urn:hl7-org:v3\">\n  <!-- header -->\n"
        "  <patient>\n    <name>\n      <given>Jo</given>\n      <family>Li</family>\n"
        "    </name>\n    <addr> <city>Rome</city> <country>IT</country> </addr>\n"
        "  </patient>\n  <observation>\n    <code code=\"1\"/>\n    <value>a<!-- c -->b</value>\n"
        "  </observation>\n  <section>\n    <text><content>Type 2</content> "
        "<content>diabetes</content></text>\n  </section>\n"
        "  <act xml:space=\"preserve\">\n    <code/>\n  </act>\n"
        "  <x:ext xmlns:x=\"urn:vendor\">\n    <x:a>1</x:a>\n    <x:b>2</x:b>\n  </x:ext>\n"
        "</ClinicalDocument>\n";
    cg_xml_doc_t *d = cg_xml_doc_new(NULL);
    cg_error_t e;
    assert_int_equal(xt_parse_str(d, cda, &e), CG_OK);
    xmlNodePtr root = cg_xml_doc_root(d);
    for (xmlNodePtr c = root->children; c; c = c->next)
        assert_int_equal(c->type, XML_ELEMENT_NODE);                   /* no blanks, no comment */
    assert_ptr_equal(((xmlDocPtr)cg_xml_doc_tree(d))->children, root); /* no PI */
    assert_int_equal(blank_children(d, "patient"), 0);
    assert_int_equal(blank_children(d, "observation"), 0);
    cg_buf_t b;
    cg_buf_init(&b);
    xmlNodePtr n = root->children->children; /* name */
    assert_string_equal((const char *)n->name, "name");
    cg_xml_node_text(n, &b);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "Jo Li", 5);
    assert_int_equal(blank_children(d, "addr"), 3);
    assert_string_equal(xt_text_of(d, "value"), "ab"); /* one text node, as without the comment */
    assert_int_equal(blank_children(d, "value"), 1);
    assert_string_equal(xt_text_of(d, "text"), "Type 2 diabetes");
    assert_int_equal(blank_children(d, "act"), 2);
    assert_int_equal(blank_children(d, "ext"), 3);
    cg_xml_doc_destroy(d);

    /* vendor XML (no HL7 namespace) and the option keep everything */
    d = cg_xml_doc_new(NULL);
    assert_int_equal(xt_parse_str(d, "<r>\n <observation>\n  <code/>\n </observation>\n</r>", &e),
                     CG_OK);
    assert_int_equal(blank_children(d, "observation"), 2);
    cg_xml_doc_destroy(d);
    cg_xml_options_t o;
    cg_xml_options_default(&o);
    o.keep_blank_text = 1;
    d = cg_xml_doc_new(&o);
    assert_int_equal(xt_parse_str(d, cda, &e), CG_OK);
    assert_int_equal(blank_children(d, "observation"), 3);
    cg_xml_doc_destroy(d);
    cg_buf_free(&b);
}

/* Trees live in per-document arenas: what a tree holds outside it (its dictionary, shared by
 * ID tables and internal-subset declarations) is released with it (LeakSanitizer checks), and a
 * tree stays readable while later parses fail (ASan poisons dropped arenas). */
static void test_arena_lifetimes(void **state)
{
    (void)state;
    static const char with_tables[] =
        "<!DOCTYPE r [<!ELEMENT r ANY><!ATTLIST r a CDATA #IMPLIED><!NOTATION n SYSTEM \"x\">]>"
        "<r a=\"1\"><s xml:id=\"i1\">one</s><s xml:id=\"i2\">two</s></r>";
    cg_xml_doc_t *d = cg_xml_doc_new(NULL);
    cg_error_t e;
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(xt_parse_str(d, with_tables, &e), CG_OK);
        assert_string_equal(xt_text_of(d, "s"), "one");
        assert_int_equal(xt_parse_str(d, "<r><s>", &e), CG_ERR_XML);
        assert_string_equal(xt_text_of(d, "s"), "one"); /* the last good tree */
    }
    /* a big document needs several arena chunks; the next one reuses them */
    size_t cap = (size_t)4 << 20, n = 0;
    char *big = malloc(cap);
    n += (size_t)snprintf(big + n, cap - n, "<r xmlns=\"urn:hl7-org:v3\">");
    while (n + 64 < cap)
        n += (size_t)snprintf(big + n, cap - n, "<e a=\"%zu\"><text>t %zu</text></e>\n", n, n);
    n += (size_t)snprintf(big + n, cap - n, "</r>");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cg_xml_parse(d, big, n, &e), CG_OK);
        assert_string_equal(xt_text_of(d, "text"), "t 26");
    }
    free(big);
    cg_xml_doc_destroy(d);
}

/* Bytes malloc has handed out, mmapped blocks included (dictionary pools grow large). */
static size_t in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/* Many distinct names fill the context's dictionary: the context is replaced once it is large,
 * so memory stays bounded, and a document parsed with the old dictionary stays readable (ASan
 * checks the lifetimes). */
static void test_dictionary_recycle(void **state)
{
    (void)state;
    cg_xml_doc_t *d = cg_xml_doc_new(NULL);
    size_t cap = 1000 * 260 + 64;
    char *doc = malloc(cap);
    char name[256];
    size_t in_use_early = 0;
    for (int round = 0; round < 60; round++) { /* 60 x 1000 names of ~250 bytes: 15 MB */
        if (round == 10)
            in_use_early = in_use();
        size_t n = (size_t)snprintf(doc, cap, "<r%d>", round);
        for (int i = 0; i < 1000; i++) {
            memset(name, 'a' + round % 26, 240);
            snprintf(name + 240, sizeof(name) - 240, "_%d_%d", round, i);
            n += (size_t)snprintf(doc + n, cap - n, "<%s/>", name);
        }
        n += (size_t)snprintf(doc + n, cap - n, "</r%d>", round);
        cg_error_t e;
        if (cg_xml_parse(d, doc, n, &e) != CG_OK)
            fail_msg("round %d: %s", round, e.text);
        xmlNodePtr root = cg_xml_doc_root(d);
        char want[16];
        snprintf(want, sizeof(want), "r%d", round);
        assert_string_equal((const char *)root->name, want);
        assert_string_equal((const char *)xmlLastElementChild(root)->name, name);
    }
    size_t in_use_late = in_use();
    if (in_use_early) /* 0 under ASan, whose allocator glibc's counters do not see */
        assert_true(in_use_late < in_use_early + ((size_t)8 << 20));
    free(doc);
    cg_xml_doc_destroy(d);
}

/* The C-CDA documents of the shared corpus, when present: each parses and summarizes. */
static void test_corpus(void **state)
{
    (void)state;
    char dirpath[1024];
    snprintf(dirpath, sizeof(dirpath), "%s/ccda/Documents", CG_SHARED_CORPUS);
    DIR *top = opendir(dirpath);
    if (!top)
        skip();
    cg_xml_doc_t *d = cg_xml_doc_new(NULL);
    size_t docs = 0;
    struct dirent *de;
    char stack[8][1024];
    int sp = 0;
    snprintf(stack[sp++], sizeof(stack[0]), "%s", dirpath);
    closedir(top);
    while (sp > 0) {
        char here[1024];
        snprintf(here, sizeof(here), "%s", stack[--sp]);
        DIR *dir = opendir(here);
        if (!dir)
            continue;
        while ((de = readdir(dir))) {
            if (de->d_name[0] == '.')
                continue;
            char path[1200];
            snprintf(path, sizeof(path), "%s/%s", here, de->d_name);
            struct stat st;
            if (stat(path, &st))
                continue;
            if (S_ISDIR(st.st_mode)) {
                if (sp < 8)
                    snprintf(stack[sp++], sizeof(stack[0]), "%s", path);
                continue;
            }
            size_t n = strlen(de->d_name);
            if (n < 4 || strcmp(de->d_name + n - 4, ".xml"))
                continue;
            size_t len;
            char *buf = th_read(path, &len);
            cg_error_t e;
            if (cg_xml_parse(d, buf, len, &e) != CG_OK)
                fail_msg("%s: line %d: %s", path, e.line, e.text);
            json_t *j = summary_json(d);
            assert_string_equal(json_string_value(json_object_get(j, "root")), "ClinicalDocument");
            assert_true(json_array_size(json_object_get(j, "sections")) > 0);
            json_decref(j);
            free(buf);
            docs++;
        }
        closedir(dir);
    }
    assert_true(docs > 0);
    cg_xml_doc_destroy(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options_and_location),
        cmocka_unit_test(test_sniff),
        cmocka_unit_test(test_too_many_attributes),
        cmocka_unit_test(test_well_formed_cda),
        cmocka_unit_test(test_unbound_prefix_tolerated),
        cmocka_unit_test(test_gb18030),
        cmocka_unit_test(test_latin1),
        cmocka_unit_test(test_invalid_bytes),
        cmocka_unit_test(test_section_kinds),
        cmocka_unit_test(test_summary),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_blank_text),
        cmocka_unit_test(test_arena_lifetimes),
        cmocka_unit_test(test_dictionary_recycle),
        cmocka_unit_test(test_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
