/* vocab_system.c - coding-system names as found in messages (HL7 v2 table 0396, CDA/FHIR OIDs)
 * to OMOP vocabulary_ids, and lookups through them (see cg_vocab.h).
 */
#include "vocab_impl.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    const char *vocab;
} systems[] = {
    /* HL7 v2 table 0396 (and spellings seen in feeds) */
    {"LN", "LOINC"},
    {"LOINC", "LOINC"},
    {"SCT", "SNOMED"},
    {"SNOMED", "SNOMED"},
    {"SNOMEDCT", "SNOMED"},
    {"SNOMED-CT", "SNOMED"},
    /* SNM is strictly the older SNOMED; senders use it for SNOMED CT codes in practice, and an
     * old code simply finds nothing */
    {"SNM", "SNOMED"},
    {"I10", "ICD10"},
    {"ICD10", "ICD10"},
    {"I10C", "ICD10CM"},
    {"ICD10CM", "ICD10CM"},
    {"ICD-10-CM", "ICD10CM"},
    {"I10P", "ICD10PCS"},
    {"ICD10PCS", "ICD10PCS"},
    /* OMOP has no WHO ICD-9: its codes are read as ICD-9-CM, which shares them */
    {"I9", "ICD9CM"},
    {"I9C", "ICD9CM"},
    {"I9CDX", "ICD9CM"},
    {"ICD9CM", "ICD9CM"},
    {"I9CP", "ICD9Proc"},
    {"RXNORM", "RxNorm"},
    {"CVX", "CVX"},
    {"NDC", "NDC"},
    {"UCUM", "UCUM"},
    {"C4", "CPT4"},
    {"CPT4", "CPT4"},
    {"HCPCS", "HCPCS"},
    {"HL70001", "HL7_0001"},
    {"HL70004", "HL7_0004"},
    /* CDA / FHIR codeSystem OIDs */
    {"2.16.840.1.113883.6.1", "LOINC"},
    {"2.16.840.1.113883.6.96", "SNOMED"},
    {"2.16.840.1.113883.6.90", "ICD10CM"},
    {"2.16.840.1.113883.6.3", "ICD10"},
    {"2.16.840.1.113883.6.4", "ICD10PCS"},
    {"2.16.840.1.113883.6.88", "RxNorm"},
    {"2.16.840.1.113883.12.292", "CVX"},
    {"2.16.840.1.113883.6.8", "UCUM"},
    {"2.16.840.1.113883.6.69", "NDC"},
    {"2.16.840.1.113883.6.103", "ICD9CM"},
    {"2.16.840.1.113883.6.104", "ICD9Proc"},
    {"2.16.840.1.113883.6.12", "CPT4"},
    {"2.16.840.1.113883.6.285", "HCPCS"},
    {"2.16.840.1.113883.12.1", "HL7_0001"}, /* v2 table 0001 */
    {"2.16.840.1.113883.12.4", "HL7_0004"}, /* v2 table 0004 */
    {"2.16.840.1.113883.5.1", "HL7_0001"},  /* CDA AdministrativeGender: F, M as in 0001 */
    {"2.16.840.1.113883.5.4", "HL7_ActCode"},
};

const char *cg_vocab_system(cg_slice_t name)
{
    if (!name.ptr)
        return NULL;
    while (name.len && isspace((unsigned char)name.ptr[0])) {
        name.ptr++;
        name.len--;
    }
    while (name.len && isspace((unsigned char)name.ptr[name.len - 1]))
        name.len--;
    if (name.len > 8 && strncasecmp(name.ptr, "urn:oid:", 8) == 0) {
        name.ptr += 8;
        name.len -= 8;
    }
    for (size_t i = 0; i < sizeof(systems) / sizeof(systems[0]); i++)
        if (strlen(systems[i].name) == name.len &&
            strncasecmp(systems[i].name, name.ptr, name.len) == 0)
            return systems[i].vocab;
    return NULL;
}

int cg_vocab_system_known(cg_slice_t name)
{
    if (cg_vocab_system(name))
        return 1;
    for (size_t i = 0; name.ptr && i < sizeof(systems) / sizeof(systems[0]); i++)
        if (strlen(systems[i].vocab) == name.len && !memcmp(systems[i].vocab, name.ptr, name.len))
            return 1;
    return 0;
}

int cg_vocab_lookup_system(const cg_vocab_t *v, cg_slice_t system, cg_slice_t code,
                           cg_vocab_hit_t *hit)
{
    const char *voc = cg_vocab_system(system);
    cg_slice_t vs = voc ? (cg_slice_t){voc, strlen(voc)} : system;
    return cg_vocab_lookup(v, vs, code, hit);
}

int cg_vocab_has_vocabulary(const cg_vocab_t *v, cg_slice_t system)
{
    const char *voc = cg_vocab_system(system);
    return cg_vocab__has_vocab_id(v, voc ? (cg_slice_t){voc, strlen(voc)} : system);
}
