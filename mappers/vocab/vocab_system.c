/* vocab_system.c - coding-system names as found in messages (HL7 v2 table 0396, CDA/FHIR OIDs)
 * to OMOP vocabulary_ids, and lookups through them (see cg_vocab.h).
 */
#include "vocab_impl.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

/* Lengths beside the names: a lookup compares lengths first and calls strncasecmp on the one
 * or two names of the right length, not on every entry (it runs once per code looked up). */
#define SYS(n, v)                                                                                  \
    {                                                                                              \
        n, v, sizeof(n) - 1, sizeof(v) - 1                                                         \
    }
static const struct {
    const char *name;
    const char *vocab;
    uint8_t name_len, vocab_len;
} systems[] = {
    /* HL7 v2 table 0396 (and spellings seen in feeds) */
    SYS("LN", "LOINC"),
    SYS("LOINC", "LOINC"),
    SYS("SCT", "SNOMED"),
    SYS("SNOMED", "SNOMED"),
    SYS("SNOMEDCT", "SNOMED"),
    SYS("SNOMED-CT", "SNOMED"),
    /* SNM is strictly the older SNOMED; senders use it for SNOMED CT codes in practice, and an
     * old code simply finds nothing */
    SYS("SNM", "SNOMED"),
    SYS("I10", "ICD10"),
    SYS("ICD10", "ICD10"),
    SYS("I10C", "ICD10CM"),
    SYS("ICD10CM", "ICD10CM"),
    SYS("ICD-10-CM", "ICD10CM"),
    SYS("I10P", "ICD10PCS"),
    SYS("ICD10PCS", "ICD10PCS"),
    /* OMOP has no WHO ICD-9: its codes are read as ICD-9-CM, which shares them */
    SYS("I9", "ICD9CM"),
    SYS("I9C", "ICD9CM"),
    SYS("I9CDX", "ICD9CM"),
    SYS("ICD9CM", "ICD9CM"),
    SYS("I9CP", "ICD9Proc"),
    SYS("RXNORM", "RxNorm"),
    SYS("CVX", "CVX"),
    SYS("NDC", "NDC"),
    SYS("UCUM", "UCUM"),
    SYS("C4", "CPT4"),
    SYS("CPT4", "CPT4"),
    SYS("HCPCS", "HCPCS"),
    SYS("HL70001", "HL7_0001"),
    SYS("HL70004", "HL7_0004"),
    /* CDA / FHIR codeSystem OIDs */
    SYS("2.16.840.1.113883.6.1", "LOINC"),
    SYS("2.16.840.1.113883.6.96", "SNOMED"),
    SYS("2.16.840.1.113883.6.90", "ICD10CM"),
    SYS("2.16.840.1.113883.6.3", "ICD10"),
    SYS("2.16.840.1.113883.6.4", "ICD10PCS"),
    SYS("2.16.840.1.113883.6.88", "RxNorm"),
    SYS("2.16.840.1.113883.12.292", "CVX"),
    SYS("2.16.840.1.113883.6.8", "UCUM"),
    SYS("2.16.840.1.113883.6.69", "NDC"),
    SYS("2.16.840.1.113883.6.103", "ICD9CM"),
    SYS("2.16.840.1.113883.6.104", "ICD9Proc"),
    SYS("2.16.840.1.113883.6.12", "CPT4"),
    SYS("2.16.840.1.113883.6.285", "HCPCS"),
    SYS("2.16.840.1.113883.12.1", "HL7_0001"), /* v2 table 0001 */
    SYS("2.16.840.1.113883.12.4", "HL7_0004"), /* v2 table 0004 */
    SYS("2.16.840.1.113883.5.1", "HL7_0001"),  /* CDA AdministrativeGender: F, M as in 0001 */
    SYS("2.16.840.1.113883.5.4", "HL7_ActCode"),
};
#undef SYS

#define N_SYSTEMS (sizeof(systems) / sizeof(systems[0]))

/* The entry of name (spaces around it and a urn:oid: prefix ignored), or N_SYSTEMS. */
static size_t system_index(cg_slice_t name)
{
    if (!name.ptr)
        return N_SYSTEMS;
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
    for (size_t i = 0; i < N_SYSTEMS; i++)
        if (systems[i].name_len == name.len &&
            strncasecmp(systems[i].name, name.ptr, name.len) == 0)
            return i;
    return N_SYSTEMS;
}

const char *cg_vocab_system(cg_slice_t name)
{
    size_t i = system_index(name);
    return i < N_SYSTEMS ? systems[i].vocab : NULL;
}

int cg_vocab_system_known(cg_slice_t name)
{
    if (cg_vocab_system(name))
        return 1;
    for (size_t i = 0; name.ptr && i < N_SYSTEMS; i++)
        if (systems[i].vocab_len == name.len && !memcmp(systems[i].vocab, name.ptr, name.len))
            return 1;
    return 0;
}

int cg_vocab_lookup_system(const cg_vocab_t *v, cg_slice_t system, cg_slice_t code,
                           cg_vocab_hit_t *hit)
{
    size_t i = system_index(system);
    cg_slice_t vs = i < N_SYSTEMS ? (cg_slice_t){systems[i].vocab, systems[i].vocab_len} : system;
    return cg_vocab_lookup(v, vs, code, hit);
}

int cg_vocab_has_vocabulary(const cg_vocab_t *v, cg_slice_t system)
{
    const char *voc = cg_vocab_system(system);
    return cg_vocab__has_vocab_id(v, voc ? (cg_slice_t){voc, strlen(voc)} : system);
}
