/* ccda_sections.c - what a C-CDA document's sections are (their templateId roots, the kinds
 * cg_xml.h names) and the document summary (`cohortgate parse` of a document): C-CDA knowledge
 * over the tree the hardened decoder in xml.c builds.
 */
#include "cg_xml.h"

#include <libxml/tree.h>
#include <string.h>

/* ---- C-CDA section kinds ---------------------------------------------------------------- */

/* Section templateId roots from C-CDA R2.1 (the "entries optional" root and, where one exists,
 * the "entries required" one ending in .1), plus the IHE and earlier HL7 section templates that
 * C-CDA R2.1 document templates name. */
#define CCDA(n)         "2.16.840.1.113883.10.20.22.2." n
#define IHE(n)          "1.3.6.1.4.1.19376.1.5.3.1." n
#define ROOTS(var, ...) static const char *const var[] = {__VA_ARGS__, NULL}

ROOTS(r_problems, CCDA("5"), CCDA("5.1"));
ROOTS(r_results, CCDA("3"), CCDA("3.1"));
ROOTS(r_vital_signs, CCDA("4"), CCDA("4.1"));
ROOTS(r_medications, CCDA("1"), CCDA("1.1"));
ROOTS(r_encounters, CCDA("22"), CCDA("22.1"));
ROOTS(r_allergies, CCDA("6"), CCDA("6.1"));
ROOTS(r_immunizations, CCDA("2"), CCDA("2.1"));
ROOTS(r_procedures, CCDA("7"), CCDA("7.1"));
ROOTS(r_social_history, CCDA("17"));
ROOTS(r_plan_of_treatment, CCDA("10"));
ROOTS(r_assessment, CCDA("8"));
ROOTS(r_assessment_and_plan, CCDA("9"));
ROOTS(r_family_history, CCDA("15"));
ROOTS(r_functional_status, CCDA("14"));
ROOTS(r_mental_status, CCDA("56"));
ROOTS(r_nutrition, CCDA("57"));
ROOTS(r_health_concerns, CCDA("58"));
ROOTS(r_goals, CCDA("60"));
ROOTS(r_health_status_evaluations, CCDA("61"));
ROOTS(r_interventions, "2.16.840.1.113883.10.20.21.2.3");
ROOTS(r_medical_equipment, CCDA("23"));
ROOTS(r_payers, CCDA("18"));
ROOTS(r_advance_directives, CCDA("21"), CCDA("21.1"));
ROOTS(r_past_medical_history, CCDA("20"));
ROOTS(r_medical_history, CCDA("39"));
ROOTS(r_chief_complaint_and_reason_for_visit, CCDA("13"));
ROOTS(r_chief_complaint, IHE("1.13.2.1"));
ROOTS(r_reason_for_visit, CCDA("12"));
ROOTS(r_reason_for_referral, IHE("3.1"));
ROOTS(r_history_of_present_illness, IHE("3.4"));
ROOTS(r_review_of_systems, IHE("3.18"));
ROOTS(r_physical_exam, "2.16.840.1.113883.10.20.2.10");
ROOTS(r_general_status, "2.16.840.1.113883.10.20.2.5");
ROOTS(r_objective, "2.16.840.1.113883.10.20.21.2.1");
ROOTS(r_subjective, "2.16.840.1.113883.10.20.21.2.2");
ROOTS(r_instructions, CCDA("45"));
ROOTS(r_admission_diagnosis, CCDA("43"));
ROOTS(r_admission_medications, CCDA("44"));
ROOTS(r_discharge_diagnosis, CCDA("24"));
ROOTS(r_discharge_medications, CCDA("11"), CCDA("11.1"));
ROOTS(r_hospital_course, IHE("3.5"));
ROOTS(r_course_of_care, CCDA("64"));
ROOTS(r_hospital_consultations, CCDA("42"));
ROOTS(r_hospital_discharge_instructions, CCDA("41"));
ROOTS(r_hospital_discharge_physical, IHE("3.26"));
ROOTS(r_hospital_discharge_studies, CCDA("16"));
ROOTS(r_medications_administered, CCDA("38"));
ROOTS(r_anesthesia, CCDA("25"));
ROOTS(r_complications, CCDA("37"));
ROOTS(r_preoperative_diagnosis, CCDA("34"));
ROOTS(r_postoperative_diagnosis, CCDA("35"));
ROOTS(r_postprocedure_diagnosis, CCDA("36"));
ROOTS(r_planned_procedure, CCDA("30"));
ROOTS(r_procedure_description, CCDA("27"));
ROOTS(r_procedure_findings, CCDA("28"));
ROOTS(r_procedure_indications, CCDA("29"));
ROOTS(r_procedure_specimens_taken, CCDA("31"));
ROOTS(r_procedure_implants, CCDA("40"));
ROOTS(r_procedure_disposition, "2.16.840.1.113883.10.20.18.2.12");
ROOTS(r_procedure_estimated_blood_loss, "2.16.840.1.113883.10.20.18.2.9");
ROOTS(r_operative_note_fluids, "2.16.840.1.113883.10.20.7.12");
ROOTS(r_surgical_drains, "2.16.840.1.113883.10.20.7.13");
ROOTS(r_operative_note_surgical_procedure, "2.16.840.1.113883.10.20.7.14");
ROOTS(r_dicom_object_catalog, "2.16.840.1.113883.10.20.6.1.1");
ROOTS(r_findings, "2.16.840.1.113883.10.20.6.1.2");
ROOTS(r_notes, CCDA("65"));
ROOTS(r_care_teams, CCDA("500"));

#define KIND(name)                                                                                 \
    {                                                                                              \
#name, r_##name                                                                            \
    }
static const cg_xml_section_kind_t section_kinds[] = {
    KIND(problems),
    KIND(results),
    KIND(vital_signs),
    KIND(medications),
    KIND(encounters),
    KIND(allergies),
    KIND(immunizations),
    KIND(procedures),
    KIND(social_history),
    KIND(plan_of_treatment),
    KIND(assessment),
    KIND(assessment_and_plan),
    KIND(family_history),
    KIND(functional_status),
    KIND(mental_status),
    KIND(nutrition),
    KIND(health_concerns),
    KIND(goals),
    KIND(health_status_evaluations),
    KIND(interventions),
    KIND(medical_equipment),
    KIND(payers),
    KIND(advance_directives),
    KIND(past_medical_history),
    KIND(medical_history),
    KIND(chief_complaint_and_reason_for_visit),
    KIND(chief_complaint),
    KIND(reason_for_visit),
    KIND(reason_for_referral),
    KIND(history_of_present_illness),
    KIND(review_of_systems),
    KIND(physical_exam),
    KIND(general_status),
    KIND(objective),
    KIND(subjective),
    KIND(instructions),
    KIND(admission_diagnosis),
    KIND(admission_medications),
    KIND(discharge_diagnosis),
    KIND(discharge_medications),
    KIND(hospital_course),
    KIND(course_of_care),
    KIND(hospital_consultations),
    KIND(hospital_discharge_instructions),
    KIND(hospital_discharge_physical),
    KIND(hospital_discharge_studies),
    KIND(medications_administered),
    KIND(anesthesia),
    KIND(complications),
    KIND(preoperative_diagnosis),
    KIND(postoperative_diagnosis),
    KIND(postprocedure_diagnosis),
    KIND(planned_procedure),
    KIND(procedure_description),
    KIND(procedure_findings),
    KIND(procedure_indications),
    KIND(procedure_specimens_taken),
    KIND(procedure_implants),
    KIND(procedure_disposition),
    KIND(procedure_estimated_blood_loss),
    KIND(operative_note_fluids),
    KIND(surgical_drains),
    KIND(operative_note_surgical_procedure),
    KIND(dicom_object_catalog),
    KIND(findings),
    KIND(notes),
    KIND(care_teams),
};
#define N_SECTION_KINDS (sizeof(section_kinds) / sizeof(section_kinds[0]))

const cg_xml_section_kind_t *cg_xml_section_kinds(size_t *n)
{
    if (n)
        *n = N_SECTION_KINDS;
    return section_kinds;
}

const cg_xml_section_kind_t *cg_xml_section_kind(const char *name)
{
    for (size_t i = 0; name && i < N_SECTION_KINDS; i++)
        if (!strcmp(section_kinds[i].name, name))
            return &section_kinds[i];
    return NULL;
}

const cg_xml_section_kind_t *cg_xml_section_kind_of(const char *root, size_t len)
{
    if (!root)
        return NULL;
    for (size_t i = 0; i < N_SECTION_KINDS; i++)
        for (const char *const *r = section_kinds[i].template_roots; *r; r++)
            if (strlen(*r) == len && !memcmp(*r, root, len))
                return &section_kinds[i];
    return NULL;
}

/* ---- summary ---------------------------------------------------------------------------- */

static int same_ns(const xmlNode *n, const xmlNs *ns)
{
    if (!n->ns || !ns)
        return !n->ns && !ns;
    return n->ns == ns || xmlStrEqual(n->ns->href, ns->href);
}

static int is_elem(const xmlNode *n, const char *name, const xmlNs *ns)
{
    return n->type == XML_ELEMENT_NODE && same_ns(n, ns) && !strcmp((const char *)n->name, name);
}

static void put_str_or_null(cg_buf_t *out, const char *s)
{
    if (s)
        cg_buf_put_json_str(out, s, strlen(s));
    else
        cg_buf_puts(out, "null");
}

/* The templateId roots among parent's children, as a JSON array; *kind gets the first that
 * names a section kind. */
static void put_template_ids(cg_buf_t *out, const xmlNode *parent, const xmlNs *ns,
                             const cg_xml_section_kind_t **kind)
{
    int any = 0;
    cg_buf_putc(out, '[');
    for (const xmlNode *c = parent->children; c; c = c->next) {
        if (!is_elem(c, "templateId", ns))
            continue;
        xmlChar *root = xmlGetNoNsProp(c, (const xmlChar *)"root");
        if (!root)
            continue;
        if (any++)
            cg_buf_putc(out, ',');
        cg_buf_put_json_str(out, (const char *)root, strlen((const char *)root));
        if (kind && !*kind)
            *kind = cg_xml_section_kind_of((const char *)root, strlen((const char *)root));
        xmlFree(root);
    }
    cg_buf_putc(out, ']');
}

static void put_section(cg_buf_t *out, const xmlNode *s, const xmlNs *ns, cg_buf_t *tmp)
{
    const cg_xml_section_kind_t *kind = NULL;
    cg_buf_t ids;
    cg_buf_init(&ids);
    put_template_ids(&ids, s, ns, &kind);
    cg_buf_puts(out, "{\"kind\":");
    put_str_or_null(out, kind ? kind->name : NULL);
    cg_buf_puts(out, ",\"templateIds\":");
    cg_buf_append(out, ids.data, ids.len);
    cg_buf_free(&ids);
    cg_buf_puts(out, ",\"title\":");
    const xmlNode *title = NULL;
    size_t entries = 0;
    for (const xmlNode *c = s->children; c; c = c->next) {
        if (!title && is_elem(c, "title", ns))
            title = c;
        else if (is_elem(c, "entry", ns))
            entries++;
    }
    if (title) {
        cg_buf_reset(tmp);
        cg_xml_node_text(title, tmp);
        cg_buf_put_json_str(out, tmp->data ? tmp->data : "", tmp->len);
    } else {
        cg_buf_puts(out, "null");
    }
    cg_buf_printf(out, ",\"entries\":%zu}", entries);
}

cg_err_t cg_xml_summary(const cg_xml_doc_t *d, cg_buf_t *out)
{
    const xmlNode *root = cg_xml_doc_root(d);
    if (!root || !out)
        return CG_ERR_INVALID_ARG;
    const xmlNs *ns = root->ns;
    cg_buf_t tmp;
    cg_buf_init(&tmp);
    cg_buf_puts(out, "{\"root\":");
    put_str_or_null(out, (const char *)root->name);
    cg_buf_puts(out, ",\"namespace\":");
    put_str_or_null(out, ns ? (const char *)ns->href : NULL);
    cg_buf_puts(out, ",\"templateIds\":");
    put_template_ids(out, root, ns, NULL);
    cg_buf_puts(out, ",\"id\":");
    const xmlNode *id = NULL;
    for (const xmlNode *c = root->children; c && !id; c = c->next)
        if (is_elem(c, "id", ns))
            id = c;
    xmlChar *id_root = id ? xmlGetNoNsProp(id, (const xmlChar *)"root") : NULL;
    xmlChar *id_ext = id ? xmlGetNoNsProp(id, (const xmlChar *)"extension") : NULL;
    if (id_root || id_ext) {
        cg_buf_reset(&tmp);
        cg_buf_puts(&tmp, id_root ? (const char *)id_root : "");
        if (id_ext) {
            cg_buf_putc(&tmp, '^');
            cg_buf_puts(&tmp, (const char *)id_ext);
        }
        cg_buf_put_json_str(out, tmp.data, tmp.len);
    } else {
        cg_buf_puts(out, "null");
    }
    xmlFree(id_root);
    xmlFree(id_ext);
    /* every section in document order (nested ones too), without recursion: depth is
     * bounded by the parse limit, but a loop needs no stack at all */
    cg_buf_puts(out, ",\"sections\":[");
    int any = 0;
    const xmlNode *n = root;
    while (n) {
        if (is_elem(n, "section", ns)) {
            if (any++)
                cg_buf_putc(out, ',');
            put_section(out, n, ns, &tmp);
        }
        if (n->type == XML_ELEMENT_NODE && n->children) {
            n = n->children;
            continue;
        }
        while (n && n != root && !n->next)
            n = n->parent;
        n = n && n != root ? n->next : NULL;
    }
    cg_buf_puts(out, "]}");
    cg_buf_free(&tmp);
    return out->failed ? CG_ERR_NOMEM : CG_OK;
}
