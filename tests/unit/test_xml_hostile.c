/* test_xml_hostile.c - the XML decoder (cg_xml.h) against hostile and broken input: refused
 * DOCTYPEs (XXE, billion laughs, external DTDs, a network fetch), libxml2's globals left as
 * they were, depth, size and node limits, truncated and non-XML bytes. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <libxml/globals.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "cg_xml.h"
#include "xml_test_util.h"

static void assert_refused(cg_xml_doc_t *d, const char *doc, const char *why)
{
    cg_error_t e;
    void *before = cg_xml_doc_tree(d);
    assert_int_equal(xt_parse_str(d, doc, &e), CG_ERR_XML);
    assert_int_equal(e.code, CG_ERR_XML);
    if (!strstr(e.text, why))
        fail_msg("reason '%s' does not say '%s'", e.text, why);
    assert_null(strstr(e.text, "root:"));
    assert_ptr_equal(cg_xml_doc_tree(d), before); /* a failed parse keeps the last document */
}

static void test_xxe_refused(void **state)
{
    (void)state;
    cg_xml_doc_t *d = cg_xml_doc_new(NULL);
    assert_refused(d,
                   "<?xml version=\"1.0\"?>\n"
                   "<!DOCTYPE ClinicalDocument [\n"
                   "  <!ENTITY xxe SYSTEM \"file:///etc/passwd\">\n"
                   "]>\n"
                   "<ClinicalDocument><title>&xxe;</title></ClinicalDocument>",
                   "DOCTYPE declares entities ('xxe'); refused (XXE/entity expansion)");
    assert_null(cg_xml_doc_tree(d));
    cg_error_t e;
    assert_int_equal(xt_parse_str(d, "<a>ok</a>", &e), CG_OK);
    void *good = cg_xml_doc_tree(d);
    /* parameter entities, internal entities, unparsed entities: all refused, with the line */
    assert_refused(d, "<!DOCTYPE a [<!ENTITY % pe SYSTEM \"file:///etc/passwd\"> %pe;]><a/>",
                   "DOCTYPE declares entities ('pe')");
    assert_refused(d, "<!DOCTYPE a [\n<!ENTITY name \"harmless\">]>\n<a>&name;</a>",
                   "refused (XXE/entity expansion)");
    assert_int_equal(xt_parse_str(d, "<!DOCTYPE a [\n\n<!ENTITY n \"x\">]><a/>", &e), CG_ERR_XML);
    assert_int_equal(e.line, 3);
    assert_refused(d,
                   "<!DOCTYPE a [<!NOTATION gif SYSTEM \"image/gif\">"
                   "<!ENTITY pic SYSTEM \"file:///etc/passwd\" NDATA gif>]><a/>",
                   "DOCTYPE declares entities ('pic')");
    assert_ptr_equal(cg_xml_doc_tree(d), good);
    assert_string_equal(xt_text_of(d, "a"), "ok");
    /* an undeclared entity without any DTD is plain malformed XML */
    assert_int_equal(xt_parse_str(d, "<a>&xxe;</a>", &e), CG_ERR_XML);
    assert_non_null(strstr(e.text, "xxe"));
    cg_xml_doc_destroy(d);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_billion_laughs(void **state)
{
    (void)state;
    char doc[4096];
    size_t n;
    /* the classic shape: lolN refers to lol(N-1) ten times */
    n = (size_t)snprintf(doc, sizeof(doc),
                         "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n"
                         "<!ENTITY lol \"lol\">\n");
    for (int i = 1; i <= 9; i++) {
        char prev[8];
        if (i == 1)
            strcpy(prev, "lol");
        else
            snprintf(prev, sizeof(prev), "lol%d", i - 1);
        n += (size_t)snprintf(doc + n, sizeof(doc) - n, "<!ENTITY lol%d \"", i);
        for (int k = 0; k < 10; k++)
            n += (size_t)snprintf(doc + n, sizeof(doc) - n, "&%s;", prev);
        n += (size_t)snprintf(doc + n, sizeof(doc) - n, "\">\n");
    }
    snprintf(doc + n, sizeof(doc) - n, "]>\n<lolz>&lol9;</lolz>\n");
    cg_xml_doc_t *d = cg_xml_doc_new(NULL);
    double t0 = now();
    for (int i = 0; i < 100; i++)
        assert_refused(d, doc, "DOCTYPE declares entities ('lol')");
    double per = (now() - t0) / 100;
    if (per > 0.005)
        fail_msg("billion laughs took %.3f ms per document", per * 1e3);
    cg_xml_doc_destroy(d);
}

/* A listening socket on loopback: any attempt by the parser to fetch a DTD or entity from it
 * shows up as a pending connection. */
static int listener(int *port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s, 4), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &al), 0);
    *port = ntohs(a.sin_port);
    fcntl(s, F_SETFL, O_NONBLOCK);
    return s;
}

static void test_external_dtd(void **state)
{
    (void)state;
    /* Decision: a DOCTYPE naming an external DTD is accepted, and the DTD is never fetched
     * (no network, no file): nothing in it can change the document. An entity that only such
     * a DTD could declare is refused. */
    int port, s = listener(&port);
    char doc[512];
    snprintf(doc, sizeof(doc),
             "<?xml version=\"1.0\"?>\n<!DOCTYPE ClinicalDocument SYSTEM "
             "\"http://127.0.0.1:%d/cda.dtd\">\n<ClinicalDocument>ok</ClinicalDocument>",
             port);
    cg_xml_doc_t *d = cg_xml_doc_new(NULL);
    cg_error_t e;
    assert_int_equal(xt_parse_str(d, doc, &e), CG_OK);
    assert_string_equal(xt_text_of(d, "ClinicalDocument"), "ok");
    snprintf(doc, sizeof(doc),
             "<!DOCTYPE a PUBLIC \"-//X//DTD X//EN\" \"http://127.0.0.1:%d/x.dtd\">"
             "<a>&secret;</a>",
             port);
    assert_refused(d, doc, "entity 'secret' is not declared");
    snprintf(doc, sizeof(doc),
             "<!DOCTYPE a [<!ENTITY remote SYSTEM \"http://127.0.0.1:%d/e\">]><a>&remote;</a>",
             port);
    assert_refused(d, doc, "DOCTYPE declares entities");
    assert_int_equal(accept(s, NULL, NULL), -1);
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    close(s);

    /* a local DTD with an entity and a default attribute: neither may reach the document */
    char dir[] = "/tmp/cg_xml_dtdXXXXXX";
    assert_non_null(mkdtemp(dir));
    char dtd[256];
    snprintf(dtd, sizeof(dtd), "%s/x.dtd", dir);
    FILE *f = fopen(dtd, "w");
    assert_non_null(f);
    fputs("<!ENTITY secret \"TOPSECRET\">\n<!ATTLIST a injected CDATA \"INJECTED\">\n", f);
    fclose(f);
    snprintf(doc, sizeof(doc), "<!DOCTYPE a SYSTEM \"file://%s\"><a>plain</a>", dtd);
    assert_int_equal(xt_parse_str(d, doc, &e), CG_OK);
    xmlNodePtr root = cg_xml_doc_root(d);
    assert_null(xmlHasProp(root, (const xmlChar *)"injected"));
    assert_string_equal(xt_text_of(d, "a"), "plain");
    snprintf(doc, sizeof(doc), "<!DOCTYPE a SYSTEM \"%s\"><a>&secret;</a>", dtd);
    assert_refused(d, doc, "not declared");
    assert_int_equal(xt_parse_str(d, doc, &e), CG_ERR_XML);
    assert_null(strstr(e.text, "TOPSECRET"));
    unlink(dtd);
    rmdir(dir);
    cg_xml_doc_destroy(d);
}

/* Another part of the process may have turned libxml2's old global defaults on (entity
 * substitution, external DTD loading, validation): the decoder's own SAX table still refuses
 * entities and never loads a DTD. */
static void test_hostile_globals(void **state)
{
    (void)state;
    int old_subst = xmlSubstituteEntitiesDefault(1);
    int old_load = xmlLoadExtDtdDefaultValue, old_valid = xmlDoValidityCheckingDefaultValue;
    xmlLoadExtDtdDefaultValue = XML_DETECT_IDS | XML_COMPLETE_ATTRS;
    xmlDoValidityCheckingDefaultValue = 1;
    char dir[] = "/tmp/cg_xml_globXXXXXX";
    assert_non_null(mkdtemp(dir));
    char dtd[256], doc[512];
    snprintf(dtd, sizeof(dtd), "%s/x.dtd", dir);
    FILE *f = fopen(dtd, "w");
    assert_non_null(f);
    fputs("<!ENTITY secret \"TOPSECRET\">\n<!ATTLIST a injected CDATA \"INJECTED\">\n", f);
    fclose(f);
    cg_xml_doc_t *d = cg_xml_doc_new(NULL);
    cg_error_t e;
    snprintf(doc, sizeof(doc), "<!DOCTYPE a SYSTEM \"%s\"><a>plain</a>", dtd);
    assert_int_equal(xt_parse_str(d, doc, &e), CG_OK);
    assert_null(xmlHasProp(cg_xml_doc_root(d), (const xmlChar *)"injected"));
    snprintf(doc, sizeof(doc), "<!DOCTYPE a SYSTEM \"%s\"><a>&secret;</a>", dtd);
    assert_refused(d, doc, "not declared");
    snprintf(doc, sizeof(doc), "<!DOCTYPE a [<!ENTITY x SYSTEM \"%s\">]><a>&x;</a>", dtd);
    assert_refused(d, doc, "DOCTYPE declares entities ('x')");
    cg_xml_doc_destroy(d);
    unlink(dtd);
    rmdir(dir);
    xmlSubstituteEntitiesDefault(old_subst);
    xmlLoadExtDtdDefaultValue = old_load;
    xmlDoValidityCheckingDefaultValue = old_valid;
}

static char *nested(unsigned depth)
{
    char *s = malloc(depth * 7 + 16), *p = s;
    for (unsigned i = 0; i < depth; i++)
        p += sprintf(p, "<e>");
    p += sprintf(p, "x");
    for (unsigned i = 0; i < depth; i++)
        p += sprintf(p, "</e>");
    return s;
}

static void test_depth_limit(void **state)
{
    (void)state;
    cg_xml_doc_t *d = cg_xml_doc_new(NULL);
    cg_error_t e;
    char *ok = nested(256), *deep = nested(257), *very = nested(100000);
    assert_int_equal(xt_parse_str(d, ok, &e), CG_OK);
    assert_int_equal(xt_parse_str(d, deep, &e), CG_ERR_XML);
    assert_string_equal(e.text, "elements nested deeper than 256");
    assert_int_equal(e.line, 1);
    assert_true(e.column > 256 * 3);
    assert_int_equal(xt_parse_str(d, very, &e), CG_ERR_XML);
    assert_string_equal(e.text, "elements nested deeper than 256");
    cg_xml_doc_destroy(d);

    cg_xml_options_t o;
    cg_xml_options_default(&o);
    o.max_depth = 10;
    d = cg_xml_doc_new(&o);
    free(ok);
    free(deep);
    ok = nested(10);
    deep = nested(11);
    assert_int_equal(xt_parse_str(d, ok, &e), CG_OK);
    assert_int_equal(xt_parse_str(d, deep, &e), CG_ERR_XML);
    assert_string_equal(e.text, "elements nested deeper than 10");
    /* siblings do not add depth */
    assert_int_equal(xt_parse_str(d, "<a><b/><b/><b><c/></b></a>", &e), CG_OK);
    cg_xml_doc_destroy(d);
    free(ok);
    free(deep);
    free(very);
}

static void test_size_limit(void **state)
{
    (void)state;
    cg_xml_options_t o;
    cg_xml_options_default(&o);
    o.max_bytes = 64;
    cg_xml_doc_t *d = cg_xml_doc_new(&o);
    char doc[128];
    memset(doc, 0, sizeof(doc));
    strcpy(doc, "<a>");
    memset(doc + 3, 'x', 57);
    strcpy(doc + 60, "</a>"); /* 64 bytes: at the limit */
    cg_error_t e;
    assert_int_equal(cg_xml_parse(d, doc, 64, &e), CG_OK);
    memset(doc + 3, 'y', 58);
    strcpy(doc + 61, "</a>");
    assert_int_equal(cg_xml_parse(d, doc, 65, &e), CG_ERR_XML);
    assert_string_equal(e.text, "document of 65 bytes is over the limit of 64 bytes");
    assert_int_equal(e.line, 0);
    assert_string_equal(xt_text_of(d, "a"),
                        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    cg_xml_doc_destroy(d);
}

/* Elements, attributes and text nodes count against max_nodes; past it the parse stops (and
 * with it the tree's memory), the bound named; blank indentation that is dropped costs none. */
static void test_node_limit(void **state)
{
    (void)state;
    cg_xml_options_t o;
    cg_xml_options_default(&o);
    assert_int_equal(o.max_nodes, 1000000);
    o.max_nodes = 1000;
    cg_xml_doc_t *d = cg_xml_doc_new(&o);
    cg_buf_t b;
    cg_buf_init(&b);
    /* the root, then n elements of one attribute and one text node each: 1 + 3n nodes */
    for (int n = 333; n <= 334; n++) {
        cg_buf_reset(&b);
        cg_buf_puts(&b, "<r xmlns=\"urn:hl7-org:v3\">\n");
        for (int i = 0; i < n; i++)
            cg_buf_printf(&b, "  <v a=\"%d\">x</v>\n", i);
        cg_buf_puts(&b, "</r>");
        cg_error_t e;
        cg_err_t rc = cg_xml_parse(d, b.data, b.len, &e);
        if (n == 333) {
            assert_int_equal(rc, CG_OK); /* 1,000 nodes: at the limit */
        } else {
            assert_int_equal(rc, CG_ERR_XML);
            assert_string_equal(
                e.text, "more than 1000 nodes (elements, attributes and text; xml.max_nodes)");
            assert_int_equal(e.line, 335);
        }
    }
    cg_buf_free(&b);
    cg_xml_doc_destroy(d);
}

static void test_truncated_and_not_xml(void **state)
{
    (void)state;
    cg_xml_doc_t *d = cg_xml_doc_new(NULL);
    cg_error_t e;
    size_t len;
    char *buf = xt_fixture("ccda_small.xml", &len);
    assert_int_equal(cg_xml_parse(d, buf, len / 2, &e), CG_ERR_XML);
    assert_true(e.line > 10);
    assert_true(e.column > 0);
    assert_non_null(strstr(e.text, "Premature end of data"));
    free(buf);
    assert_int_equal(xt_parse_str(d, "<a>\n<b>x</b>\n", &e), CG_ERR_XML);
    assert_int_equal(e.line, 3);
    assert_int_equal(xt_parse_str(d, "<a><b></a>", &e), CG_ERR_XML);
    assert_non_null(strstr(e.text, "mismatch"));
    assert_int_equal(xt_parse_str(d, "<a/><b/>", &e), CG_ERR_XML);
    assert_non_null(strstr(e.text, "Extra content"));
    const char hl7[] = "MSH|^~\\&|LAB|HOSP|||20240314||ORU^R01|1|P|2.5\rPID|1||42\r";
    assert_false(cg_xml_sniff(hl7, sizeof(hl7) - 1));
    assert_int_equal(xt_parse_str(d, hl7, &e), CG_ERR_XML);
    assert_int_equal(e.line, 1);
    assert_int_equal(cg_xml_parse(d, "", 0, &e), CG_ERR_XML);
    assert_string_equal(e.text, "empty document");
    assert_int_equal(cg_xml_parse(d, "\0\0\0\0", 4, &e), CG_ERR_XML);
    assert_int_equal(cg_xml_parse(d, NULL, 3, &e), CG_ERR_INVALID_ARG);
    assert_int_equal(cg_xml_parse(NULL, "<a/>", 4, &e), CG_ERR_INVALID_ARG);
    assert_null(cg_xml_doc_tree(d)); /* nothing ever parsed */
    assert_int_equal(cg_xml_parse(d, "<a/>", 4, NULL), CG_OK);
    assert_int_equal(cg_xml_parse(d, "<a", 2, NULL), CG_ERR_XML);
    cg_xml_doc_destroy(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xxe_refused),  cmocka_unit_test(test_billion_laughs),
        cmocka_unit_test(test_external_dtd), cmocka_unit_test(test_hostile_globals),
        cmocka_unit_test(test_depth_limit),  cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_node_limit),   cmocka_unit_test(test_truncated_and_not_xml),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
