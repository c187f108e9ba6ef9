/* test_file_sink.c - the file sink plug-in driven through its callbacks, as the engine drives
 * it: records become NDJSON lines (valid JSON even for bytes that are not UTF-8), and each is
 * reported delivered, with its token, once poll() has flushed it. The engine's side is faked
 * here (cg_engine_delivered, cg_engine_fatal), so no broker is needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "file/file_sink.h"

/* ---- the engine's side, faked ---- */
static void *delivered[8];
static int delivered_dead[8];
static size_t n_delivered;
static int fatals;

void cg_engine_delivered(cg_engine_t *e, void *token, int dead_letter)
{
    (void)e;
    delivered_dead[n_delivered] = dead_letter;
    delivered[n_delivered++] = token;
}

void cg_engine_fatal(cg_engine_t *e, cg_err_t code, const char *reason)
{
    (void)e;
    (void)code;
    (void)reason;
    fatals++;
}

static void test_records_become_lines_delivered_once_flushed(void **state)
{
    (void)state;
    char path[] = "/tmp/cg-file-sink-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    cg_file_sink_conf_t conf = {.path = path};
    cg_plugin_env_t env = {.conf = &conf};
    char errstr[256];
    const cg_sink_plugin_t *p = &cg_file_sink_plugin;
    void *ctx = p->init(&env, errstr, sizeof(errstr));
    assert_non_null(ctx);
    assert_null(p->txn_commit); /* no transactions: exactly-once is refused with it */

    const char *hdrs[] = {"cg.source.topic", "raw", "cg.spec", "hl7v2-adt-omop"};
    int t1, t2;
    cg_sink_record_t row = {
        "cohortgate.records", 0, "k1", 2, "{\"table\":\"person\"}", 18, hdrs, 4, &t1};
    /* a dead letter's original bytes: a quote, a control character, Latin-1 */
    const char junk[] = "MSH|\"x\"\r\xe9t\xe9";
    cg_sink_record_t dead = {"cohortgate.dead-letter", 1,    NULL, 0,  junk,
                             sizeof(junk) - 1,         hdrs, 2,    &t2};
    assert_int_equal(p->produce(ctx, &row), CG_SINK_OK);
    assert_int_equal(p->produce(ctx, &dead), CG_SINK_OK);
    assert_int_equal(p->queue_len(ctx), 2);
    assert_int_equal(n_delivered, 0); /* not before it is flushed */
    p->poll(ctx, 0);
    assert_int_equal(n_delivered, 2);
    assert_ptr_equal(delivered[0], &t1);
    assert_ptr_equal(delivered[1], &t2);
    assert_int_equal(delivered_dead[0], 0);
    assert_int_equal(delivered_dead[1], 1);
    assert_int_equal(p->queue_len(ctx), 0);
    assert_int_equal(p->flush(ctx, 0), 0);
    assert_int_equal(p->fatal(ctx, NULL, 0), 0);
    p->destroy(ctx);
    assert_int_equal(fatals, 0);

    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    json_error_t jerr;
    assert_non_null(fgets(line, sizeof(line), f));
    json_t *j = json_loads(line, 0, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "topic")), "cohortgate.records");
    assert_string_equal(json_string_value(json_object_get(j, "key")), "k1");
    assert_string_equal(json_string_value(json_object_get(j, "value")), "{\"table\":\"person\"}");
    json_t *h = json_object_get(j, "headers");
    assert_string_equal(json_string_value(json_object_get(h, "cg.spec")), "hl7v2-adt-omop");
    json_decref(j);
    assert_non_null(fgets(line, sizeof(line), f));
    j = json_loads(line, 0, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "value")),
                        "MSH|\"x\"\r\xef\xbf\xbdt\xef\xbf\xbd");
    assert_string_equal(json_string_value(json_object_get(j, "key")), "");
    json_decref(j);
    assert_null(fgets(line, sizeof(line), f)); /* one line a record */
    fclose(f);
    unlink(path);
}

static void test_unwritable_path_is_refused(void **state)
{
    (void)state;
    cg_file_sink_conf_t conf = {.path = "/nonexistent-dir/x.ndjson"};
    cg_plugin_env_t env = {.conf = &conf};
    char errstr[256] = "";
    assert_null(cg_file_sink_plugin.init(&env, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "/nonexistent-dir/x.ndjson"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_records_become_lines_delivered_once_flushed),
        cmocka_unit_test(test_unwritable_path_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
