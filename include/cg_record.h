/* cg_record.h - the JSON record envelope published for every output row (see DESIGN.md).
 *
 *   {"standard":..., "table":..., "cohorts":[...], "row":{...},
 *    "source":{"topic","partition","offset","message_id","spec","spec_version","rule"}}
 *
 * The writer appends to a caller-owned cg_buf_t, so a buffer reused per message does not
 * allocate once warm.
 */
#ifndef CG_RECORD_H
#define CG_RECORD_H

#include <stdint.h>

#include "cg_buf.h"
#include "cg_err.h"

/* Where a record came from; strings are borrowed. topic may be NULL outside Kafka (files). */
typedef struct cg_record_source {
    const char *topic;
    int32_t partition;
    int64_t offset;
    cg_slice_t message_id;
    const char *spec;
    int spec_version;
    const char *rule;
} cg_record_source_t;

/* Appends the envelope with row_json (an already-encoded JSON object) as "row", and meta_json
 * (an object of facts about the row that its table has no column for, such as a result's status)
 * as "meta" unless it is empty. */
cg_err_t cg_record_write_envelope(cg_buf_t *out, const char *standard, const char *table,
                                  const char *const *cohorts, size_t n_cohorts, cg_slice_t row_json,
                                  cg_slice_t meta_json, const cg_record_source_t *src);

#endif
