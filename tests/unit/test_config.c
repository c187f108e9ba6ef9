/* test_config.c - config loading: defaults, pass-through, and located errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_buf.h"
#include "cg_config.h"
#include "cg_kafka.h"

static cg_config_t *load(const char *text, cg_error_t *err)
{
    memset(err, 0, sizeof(*err));
    return cg_config_load_string(text, "t.json", "/base", err);
}

static void test_minimal_and_defaults(void **state)
{
    (void)state;
    cg_error_t err;
    cg_config_t *c = load("{\"inputs\":[{\"topic\":\"raw\"}],\"mapping\":{\"specs\":\"specs\"},"
                          "\"kafka\":{\"bootstrap.servers\":\"127.0.0.1:9092\",\"linger.ms\":20,"
                          "\"enable.ssl.certificate.verification\":false}}",
                          &err);
    assert_non_null(c);
    const cg_kafka_conf_t *kc = cg_kafka_conf(c);
    assert_non_null(kc);
    assert_string_equal(kc->group_id, "cohortgate");
    assert_int_equal(kc->n_inputs, 1);
    assert_string_equal(kc->inputs[0].topic, "raw");
    assert_int_equal(kc->inputs[0].format, CG_INPUT_HL7V2);
    assert_string_equal(c->output_topic, "cohortgate.records");
    assert_string_equal(c->dead_letter_topic, "cohortgate.dead-letter");
    assert_string_equal(c->quality_topic, "cohortgate.quality");
    assert_int_equal(c->commit_interval_ms, 500);
    assert_string_equal(cg_kafka_get(kc, "bootstrap.servers"), "127.0.0.1:9092");
    assert_string_equal(cg_kafka_get(kc, "linger.ms"), "20");
    assert_string_equal(cg_kafka_get(kc, "enable.ssl.certificate.verification"), "false");
    assert_null(cg_kafka_get(kc, "nope"));
    assert_int_equal(kc->embedded_enabled, 0);
    assert_int_equal(c->message_id_plain, 0); /* records' message ids keyed by default */
    cg_config_destroy(c);
    cg_config_destroy(NULL);
    /* pseudonym.message_id: plain reaches the mapping bundle's options */
    c = load("{\"inputs\":[{\"topic\":\"raw\"}],\"mapping\":{\"specs\":\"specs\"},"
             "\"pseudonym\":{\"message_id\":\"plain\"},"
             "\"kafka\":{\"bootstrap.servers\":\"127.0.0.1:9092\"}}",
             &err);
    assert_non_null(c);
    cg_mapping_opts_t mo;
    cg_config_mapping_opts(c, &mo);
    assert_int_equal(mo.message_id_plain, 1);
    cg_config_destroy(c);
}

static void expect_error(const char *text, int line, int column, const char *needle)
{
    cg_error_t err;
    cg_config_t *c = load(text, &err);
    assert_null(c);
    assert_int_equal(err.code, CG_ERR_CONFIG);
    assert_string_equal(err.file, "t.json");
    if (!strstr(err.text, needle))
        fail_msg("error '%s' lacks '%s'", err.text, needle);
    assert_int_equal(err.line, line);
    assert_int_equal(err.column, column);
}

static void test_errors_are_located(void **state)
{
    (void)state;
    /* unknown key, on line 3 column 3 */
    expect_error("{\"inputs\":[{\"topic\":\"raw\"}],\"mapping\":{\"specs\":\"s\"},\n"
                 "\"pseudonym\":{\"message_id\":\"hashed\"}}",
                 2, 14, "must be one of keyed|plain");
    expect_error("{\n \"inputs\":[{\"topic\":\"raw\"}],\n  \"outptu\": {},\n"
                 " \"kafka\":{\"bootstrap.servers\":\"x\"}}",
                 3, 3, "unknown setting 'outptu'");
    /* unknown key inside an array element: the second element's */
    expect_error("{\"inputs\":[{\"topic\":\"a\"},\n{\"topic\":\"b\",\"formt\":\"x\"}],"
                 "\"kafka\":{\"bootstrap.servers\":\"x\"}}",
                 2, 14, "unknown setting 'inputs[].formt'");
    /* wrong type */
    expect_error("{\"inputs\":[{\"topic\":\"a\"}],\"delivery\":{\"commit_interval_ms\":\"5\"},"
                 "\"kafka\":{\"bootstrap.servers\":\"x\"}}",
                 1, 39, "must be an integer");
    /* out of range */
    expect_error("{\"inputs\":[{\"topic\":\"a\"}],\"delivery\":{\"max_in_flight\":0},"
                 "\"kafka\":{\"bootstrap.servers\":\"x\"}}",
                 1, 39, "from 1 to");
    /* enum */
    expect_error("{\"inputs\":[{\"topic\":\"a\"}],\"log\":{\"level\":\"loud\"},"
                 "\"kafka\":{\"bootstrap.servers\":\"x\"}}",
                 1, 34, "one of debug|info|warn|error");
    /* required element field */
    expect_error("{\"inputs\":[{\"format\":\"hl7v2\"}],\"kafka\":{\"bootstrap.servers\":\"x\"}}", 1,
                 12, "lacks the required 'topic'");
    /* JSON syntax: jansson's position */
    expect_error("{\"inputs\": [\n}", 2, 1, "");
    /* no bootstrap and no embedded broker */
    expect_error("{\"inputs\":[{\"topic\":\"a\"}],\"mapping\":{\"specs\":\"s\"}}", 1, 1,
                 "bootstrap.servers");
    /* no specs */
    expect_error("{\"inputs\":[{\"topic\":\"a\"}],\"kafka\":{\"bootstrap.servers\":\"x\"}}", 1, 1,
                 "mapping.specs");
    /* a malformed offset */
    expect_error("{\"inputs\":[{\"topic\":\"a\"}],\"kafka\":{\"bootstrap.servers\":\"x\"},"
                 "\"mapping\":{\"specs\":\"s\",\"source_utc_offset\":\"0100\"}}",
                 1, 1, "+HH:MM");
    /* a charset iconv does not know */
    expect_error("{\"inputs\":[{\"topic\":\"a\"}],\"kafka\":{\"bootstrap.servers\":\"x\"},"
                 "\"mapping\":{\"specs\":\"s\"},\n\"hl7\":{\"default_charset\":\"KLINGON-8\"}}",
                 2, 8, "'KLINGON-8' is not a character set");
    /* a feed's message types: well-formed, and each in one list only */
    expect_error("{\"inputs\":[{\"topic\":\"a\"},\n{\"topic\":\"b\",\"dead_letter\":[\"SIU\"],"
                 "\"no_research_content\":[\"SIU\"]}],"
                 "\"kafka\":{\"bootstrap.servers\":\"x\"},\"mapping\":{\"specs\":\"s\"}}",
                 2, 36, "'inputs[].no_research_content': 'SIU' is in dead_letter too");
    expect_error("{\"inputs\":[{\"topic\":\"a\",\"dead_letter\":\"siu^s12\"}],"
                 "\"kafka\":{\"bootstrap.servers\":\"x\"},\"mapping\":{\"specs\":\"s\"}}",
                 1, 25, "'siu^s12' is no message type");
    /* kafka values must be scalars */
    expect_error("{\"inputs\":[{\"topic\":\"a\"}],\"kafka\":{\"bootstrap.servers\":[1]}}", 1, 36,
                 "must be a string, integer, boolean");
    /* duplicate keys are refused by the JSON reader */
    expect_error(
        "{\"inputs\":[{\"topic\":\"a\"}],\"inputs\":[],\"kafka\":{\"bootstrap.servers\":\"x\"}}", 1,
        34, "duplicate");
}

/* The Kafka plug-in's own settings (cg_kafka.h) are checked by the plug-in when the config
 * chooses its source or sink, and reported where they are written. */
static void test_kafka_plugin_checks(void **state)
{
    (void)state;
    /* a transactional.id of the user's, at its key */
    expect_error("{\"inputs\":[{\"topic\":\"a\"}],\"mapping\":{\"specs\":\"s\"},\n"
                 "\"kafka\":{\"bootstrap.servers\":\"x\",\"transactional.id\":\"t\"}}",
                 2, 34, "'kafka.transactional.id' is set by the gateway");
    /* the Kafka source needs topics */
    expect_error("{\"mapping\":{\"specs\":\"s\"},\"kafka\":{\"bootstrap.servers\":\"x\"}}", 1, 1,
                 "'inputs' must list at least one raw topic");
    expect_error(
        "{\"inputs\":[],\"mapping\":{\"specs\":\"s\"},\"kafka\":{\"bootstrap.servers\":\"x\"}}", 1,
        1, "'inputs' must list at least one raw topic");
    /* the Kafka sink alone (the MLLP listener's) needs a broker too, not topics in */
    expect_error("{\"source\":\"mllp\"}", 1, 1, "'kafka.bootstrap.servers' is required");
    expect_error("{\"source\":\"mllp\",\"kafka\":{\"bootstrap.servers\":\"x\",\n"
                 "  \"transactional.id\":\"t\"}}",
                 2, 3, "'kafka.transactional.id' is set by the gateway");
    cg_error_t err;
    cg_config_t *c = load("{\"source\":\"mllp\",\"kafka\":{\"bootstrap.servers\":\"x\"}}", &err);
    if (!c)
        fail_msg("%d:%d: %s", err.line, err.column, err.text);
    assert_int_equal(cg_kafka_conf(c)->n_inputs, 0);
    cg_config_destroy(c);
    /* with neither a Kafka source nor a Kafka sink, no Kafka setting is needed */
    c = load("{\"source\":\"mllp\",\"output\":{\"sink\":\"file\"}}", &err);
    if (!c)
        fail_msg("%d:%d: %s", err.line, err.column, err.text);
    assert_null(cg_kafka_get(cg_kafka_conf(c), "bootstrap.servers"));
    cg_config_destroy(c);
    /* an embedded broker stands in for bootstrap.servers */
    c = load("{\"inputs\":[{\"topic\":\"a\"}],\"mapping\":{\"specs\":\"s\"},"
             "\"embedded_broker\":{\"enabled\":true},\"delivery\":{\"transactional_id\":\"g.h\"}}",
             &err);
    if (!c)
        fail_msg("%d:%d: %s", err.line, err.column, err.text);
    assert_string_equal(cg_kafka_conf(c)->transactional_id, "g.h");
    cg_config_destroy(c);
}

static void test_embedded_paths_resolve_against_config_dir(void **state)
{
    (void)state;
    cg_error_t err;
    cg_config_t *c = load("{\"inputs\":[{\"topic\":\"raw\"}],\"mapping\":{\"specs\":\"specs\","
                          "\"vocab\":\"/v\"},\"pseudonym\":{\"key_file\":\"k\"},"
                          "\"embedded_broker\":{\"enabled\":true,"
                          "\"preload\":[{\"topic\":\"raw\",\"dir\":\"feeds\"},"
                          "{\"topic\":\"raw\",\"dir\":\"/abs\"}]}}",
                          &err);
    assert_non_null(c);
    const cg_kafka_conf_t *kc = cg_kafka_conf(c);
    assert_int_equal(kc->embedded_enabled, 1);
    assert_int_equal(kc->embedded_partitions, 3);
    assert_int_equal(kc->n_preload, 2);
    assert_string_equal(kc->preload[0].dir, "/base/feeds");
    assert_string_equal(kc->preload[1].dir, "/abs");
    assert_int_equal(c->n_specs, 1);
    assert_string_equal(c->specs[0], "/base/specs");
    assert_int_equal(c->n_vocab, 1);
    assert_string_equal(c->vocab[0], "/v");
    assert_string_equal(c->key_file, "/base/k");
    assert_string_equal(c->key_env, "COHORTGATE_PSEUDONYM_KEY");
    assert_null(c->athena);
    cg_config_destroy(c);
}

/* mapping.specs and mapping.vocab are layers: a string or a list, each resolved; the mapping
 * options get the first as the base and the rest over it. */
static void test_layer_lists(void **state)
{
    (void)state;
    cg_error_t err;
    cg_config_t *c =
        load("{\"inputs\":[{\"topic\":\"raw\"}],\"mapping\":{\"specs\":[\"/opt/specs\","
             "\"site/specs\"],\"vocab\":[\"/opt/specs/vocab\",\"site/"
             "stcm.csv\"]},\"kafka\":{\"bootstrap.servers\":\"x:1\"}}",
             &err);
    assert_non_null(c);
    assert_int_equal(c->n_specs, 2);
    assert_string_equal(c->specs[0], "/opt/specs");
    assert_string_equal(c->specs[1], "/base/site/specs");
    assert_int_equal(c->n_vocab, 2);
    assert_string_equal(c->vocab[1], "/base/site/stcm.csv");
    cg_mapping_opts_t mo;
    cg_config_mapping_opts(c, &mo);
    assert_string_equal(mo.specs, "/opt/specs");
    assert_int_equal(mo.n_more_specs, 1);
    assert_string_equal(mo.more_specs[0], "/base/site/specs");
    assert_string_equal(mo.vocab, "/opt/specs/vocab");
    assert_int_equal(mo.n_more_vocab, 1);
    assert_string_equal(mo.more_vocab[0], "/base/site/stcm.csv");
    cg_config_destroy(c);
    /* "" (the default) and [] are no vocabulary layers: each spec layer's vocab/ */
    c = load("{\"inputs\":[{\"topic\":\"raw\"}],\"mapping\":{\"specs\":\"s\",\"vocab\":[]},"
             "\"kafka\":{\"bootstrap.servers\":\"x:1\"}}",
             &err);
    assert_non_null(c);
    assert_int_equal(c->n_vocab, 0);
    assert_null(c->vocab);
    cg_config_mapping_opts(c, &mo);
    assert_null(mo.vocab);
    assert_int_equal(mo.n_more_vocab, 0);
    cg_config_destroy(c);
    expect_error("{\"inputs\":[{\"topic\":\"a\"}],\n\"mapping\":{\"specs\":[]}}", 2, 12,
                 "'mapping.specs' must not be an empty list");
    expect_error("{\"inputs\":[{\"topic\":\"a\"}],\n\"mapping\":{\"specs\":[\"a\", 3]}}", 2, 12,
                 "each element of 'mapping.specs' must be a non-empty string");
    expect_error("{\"inputs\":[{\"topic\":\"a\"}],\n\"mapping\":{\"specs\":7}}", 2, 12,
                 "'mapping.specs' must be a string or a list of strings");
}

static void test_shipped_configs_load(void **state)
{
    (void)state;
    cg_error_t err;
    cg_config_t *c = cg_config_load_file(CG_SOURCE_DIR "/config/demo.json", &err);
    if (!c)
        fail_msg("%s:%d:%d: %s", err.file, err.line, err.column, err.text);
    cg_config_destroy(c);
    setenv("COHORTGATE_KAFKA_PASSWORD", "x", 1); /* its kafka.sasl.password */
    c = cg_config_load_file(CG_SOURCE_DIR "/config/production.json", &err);
    if (!c)
        fail_msg("%s:%d:%d: %s", err.file, err.line, err.column, err.text);
    cg_config_destroy(c);
    assert_null(cg_config_load_file("/nonexistent/x.json", &err));
    assert_int_equal(err.code, CG_ERR_IO);
}

/* config/README.md embeds `cohortgate check --reference`; they must not drift apart. */
static void test_readme_reference_matches_table(void **state)
{
    (void)state;
    char *gen = NULL;
    size_t gen_len = 0;
    FILE *m = open_memstream(&gen, &gen_len);
    cg_config_write_reference(m);
    fclose(m);

    /* the whole file: a fixed buffer would cut the END marker off as the README grows */
    cg_buf_t b;
    cg_buf_init(&b);
    assert_int_equal(cg_buf_read_file(&b, CG_SOURCE_DIR "/config/README.md"), CG_OK);
    const char *doc = b.data;
    const char *begin = strstr(doc, "<!-- BEGIN REFERENCE -->\n");
    const char *end = strstr(doc, "<!-- END REFERENCE -->");
    assert_non_null(begin);
    assert_non_null(end);
    begin += strlen("<!-- BEGIN REFERENCE -->\n");
    if ((size_t)(end - begin) != gen_len || memcmp(begin, gen, gen_len) != 0)
        fail_msg("config/README.md is out of date: regenerate its table with "
                 "`cohortgate check --reference`");
    free(gen);
    cg_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_and_defaults),
        cmocka_unit_test(test_errors_are_located),
        cmocka_unit_test(test_kafka_plugin_checks),
        cmocka_unit_test(test_embedded_paths_resolve_against_config_dir),
        cmocka_unit_test(test_layer_lists),
        cmocka_unit_test(test_shipped_configs_load),
        cmocka_unit_test(test_readme_reference_matches_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
