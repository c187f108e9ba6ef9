/* test_hl7_corpus.c - every message of ../shared/corpus/hl7v2 decodes, and MSH-9 / MSH-10 agree
 * with a plain reading of the bytes. Skipped (and says so) when the corpus is absent. */
#include "test_hl7_util.h"

#include <dirent.h>
#include <sys/stat.h>

/* Files the corpus ships as deliberately broken messages (no MSH-2 at all, or empty). */
static int expected_bad(const char *path)
{
    return strstr(path, "/empty.hl7") || strstr(path, "msh_present_but_missing_all_fields") ||
           strstr(path, "msh_present_but_missing_msh-2");
}

/* MSH field n (n >= 2) read naively: split the MSH line on its separator. */
static void plain_field(const char *msh, size_t len, int n, char *out, size_t size)
{
    char fs = msh[3];
    int field = 1;
    size_t i = 3, start = 0;
    out[0] = '\0';
    for (; i <= len; i++) {
        if (i == len || msh[i] == fs || msh[i] == '\r' || msh[i] == '\n') {
            if (field == n) {
                size_t l = i - start < size - 1 ? i - start : size - 1;
                memcpy(out, msh + start, l);
                out[l] = '\0';
                return;
            }
            if (i == len || msh[i] != fs)
                return;
            field++;
            start = i + 1;
        }
    }
}

static size_t files, messages, bad_files;

static void check_file(const char *path, cg_hl7_msg_t *m)
{
    size_t len;
    char *buf = th_read(path, &len);
    assert_non_null(buf);
    files++;
    cg_hl7_reader_t r;
    cg_error_t e;
    cg_hl7_reader_init(&r, buf, len);
    int n = 0, failed = 0;
    while (cg_hl7_reader_more(&r)) {
        cg_err_t rc = cg_hl7_reader_next(&r, m, &e);
        if (rc != CG_OK) {
            failed = 1;
            if (!expected_bad(path)) {
                char loc[512];
                fail_msg("%s: message %zu: %s", path, e.message,
                         cg_error_format(&e, loc, sizeof(loc)));
            }
            continue;
        }
        n++;
        messages++;
        cg_slice_t b = cg_hl7_msg_bytes(m);
        char want9[256], want10[256];
        plain_field(b.ptr, b.len, 9, want9, sizeof(want9));
        plain_field(b.ptr, b.len, 10, want10, sizeof(want10));
        const char *got9 = th_get(m, "MSH-9");
        if (strcmp(got9 ? got9 : "", want9))
            fail_msg("%s: MSH-9 \"%s\" != \"%s\"", path, got9 ? got9 : "", want9);
        const char *got10 = th_get(m, "MSH-10");
        if (strcmp(got10 ? got10 : "", want10))
            fail_msg("%s: MSH-10 \"%s\" != \"%s\"", path, got10 ? got10 : "", want10);
        /* every value of the message reads (escapes, charset) */
        cg_buf_t out;
        cg_buf_init(&out);
        for (uint32_t s = 0; s < cg_hl7_seg_count(m); s++)
            for (uint32_t f = 1; f <= cg_hl7_field_count(m, s); f++) {
                cg_slice_t raw;
                if (!cg_hl7_get_raw(m, s, f, 0, 0, 0, &raw))
                    fail_msg("%s: segment %u field %u missing", path, s, f);
                if (!strcmp(cg_hl7_seg_name(m, s), "MSH") && f <= 2)
                    continue;
                if (cg_hl7_decode(m, raw, &out, &e) != CG_OK)
                    fail_msg("%s: %s", path, e.text);
            }
        cg_buf_free(&out);
    }
    if (expected_bad(path)) {
        assert_true(failed || n == 0);
        bad_files++;
    }
    free(buf);
}

static void walk(const char *dir, cg_hl7_msg_t *m)
{
    struct dirent **ents;
    int n = scandir(dir, &ents, NULL, alphasort);
    assert_true(n >= 0);
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, ents[i]->d_name);
        struct stat st;
        if (ents[i]->d_name[0] != '.' && stat(path, &st) == 0) {
            if (S_ISDIR(st.st_mode))
                walk(path, m);
            else if (strstr(ents[i]->d_name, ".hl7"))
                check_file(path, m);
        }
        free(ents[i]);
    }
    free(ents);
}

static void test_corpus(void **state)
{
    (void)state;
    const char *dir = CG_SHARED_CORPUS "/hl7v2";
    struct stat st;
    if (stat(dir, &st) != 0) {
        printf("SKIPPED: ../shared/corpus/hl7v2 not found (%s)\n", dir);
        skip();
    }
    cg_hl7_msg_t *m = cg_hl7_msg_new(NULL);
    walk(dir, m);
    cg_hl7_msg_destroy(m);
    printf("corpus: %zu files, %zu messages decoded, %zu files deliberately broken\n", files,
           messages, bad_files);
    assert_true(messages >= 129);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_corpus)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
