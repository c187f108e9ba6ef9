/* pg_record.c - the parts of cohortgate's own records the sink applies (README, "What every
 * record says it does"): a person merge (cohortgate.person_merge: the survivor and the merged
 * person) and a retraction (cohortgate.document_retraction: the person and the replaced
 * document; cohortgate.order_retraction: the person and the cancelled order), read from the
 * record's row, with what is missing said for the rejects.
 */
#include "pg_int.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* The text of member of row when it is an id as records carry it: a JSON integer, or its
 * digits as a string (output.ids_as_strings). 1 with *text (in buf when written), else 0. */
static int id_member(const json_t *row, const char *member, char *buf, size_t size,
                     const char **text)
{
    const json_t *v = json_object_get(row, member);
    const char *t = json_string_value(v);
    size_t len;
    bool quoted;
    if (!json_is_integer(v) && !(t && pg_id_text_ok(t, json_string_length(v))))
        return 0;
    return cg_omop_json_text(v, buf, size, text, &len, &quoted) ? 1 : 0;
}

int pg_record_merge(const struct json_t *row, pg_id_buf_t *merged, pg_id_buf_t *survivor, char *why,
                    size_t why_size)
{
    if (id_member(row, "merged_person_id", merged->buf, sizeof(merged->buf), &merged->text) &&
        id_member(row, "person_id", survivor->buf, sizeof(survivor->buf), &survivor->text))
        return 0;
    snprintf(why, why_size,
             "a merge needs integer person_id and merged_person_id (numbers, or strings of "
             "digits as output.ids_as_strings writes them)");
    return -1;
}

int pg_record_retraction(const struct json_t *row, int order, pg_id_buf_t *person, char *doc,
                         size_t doc_size, int *remember, char *why, size_t why_size)
{
    /* a cancel request (CA) may be refused (UC) and the order's results come after all; an
     * order cancelled (OC) or a replaced document stays retracted */
    const char *control = order ? json_string_value(json_object_get(row, "order_control")) : NULL;
    *remember = !(control && !strcmp(control, "CA"));
    /* an order's rows carry "order:" and its id in cg.document (the gateway's jobs.c) */
    const json_t *v = json_object_get(row, order ? "order_id" : "replaced_document_id");
    const char *id = json_string_value(v);
    if (id_member(row, "person_id", person->buf, sizeof(person->buf), &person->text) && id && *id &&
        (size_t)snprintf(doc, doc_size, "%s%s", order ? CG_ROW_ORDER_DOC_PREFIX : "", id) <
            doc_size)
        return 0;
    snprintf(why, why_size, "%s needs an integer person_id and a%s string",
             order ? "an order retraction" : "a document retraction",
             order ? "n order_id" : " replaced_document_id");
    return -1;
}
