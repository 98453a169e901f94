/* The conditions a person can act on, their triage levels and advice, and
 * which training labels belong to each.
 *
 * Triage errs on the side of caution: anything that can spread under the
 * skin (cellulitis, necrotising fasciitis) or might be a melanoma is never
 * "self-care". The "other" condition collects the many DermNet topics that
 * are none of the named ones; the product treats it as "see a doctor". */
#include "screening/screening.h"

#include <string.h>

static const screening_condition conditions[] = {
    {"fungal", "Fungal infection", TRIAGE_PHARMACIST_GP,
     "Often treated with an antifungal cream from a pharmacist. See a GP if it spreads, is on the scalp or nails, or "
     "has not cleared after two weeks of treatment."},
    {"bacterial", "Bacterial skin infection", TRIAGE_DOCTOR_SOON,
     "See a doctor within a day or two: it may need antibiotics. Get urgent help if the redness spreads fast, you "
     "have a fever or feel very unwell."},
    {"viral", "Viral rash", TRIAGE_PHARMACIST_GP,
     "Usually clears by itself; a pharmacist can help with itching and pain. See a GP if it is near the eyes, you are "
     "pregnant or have a weak immune system, or for shingles within 3 days of the rash."},
    {"parasitic", "Parasitic infestation", TRIAGE_PHARMACIST_GP,
     "Needs treatment: scabies cream from a pharmacist (treat everyone at home), or a GP for creeping eruption."},
    {"eczema", "Eczema / dermatitis", TRIAGE_PHARMACIST_GP,
     "Moisturise often and avoid triggers; a pharmacist can suggest a mild steroid cream. See a GP if it weeps, "
     "crusts or does not improve."},
    {"psoriasis", "Psoriasis", TRIAGE_PHARMACIST_GP,
     "See a GP to confirm it and discuss treatment. Widespread pustules with fever need urgent care."},
    {"acne_rosacea", "Acne / rosacea", TRIAGE_PHARMACIST_GP,
     "A pharmacist can suggest treatments that help most people with acne. Rosacea, and acne that scars, hurts or "
     "affects your mood, need a GP."},
    {"benign_mole", "Benign-looking mole", TRIAGE_PHARMACIST_GP,
     "Looks like a common mole, but a photo alone cannot clear a spot: show it to a pharmacist or GP. Check it "
     "monthly and see a doctor if it changes in size, shape or colour, bleeds or itches."},
    {"melanoma", "Suspicious pigmented lesion", TRIAGE_URGENT,
     "Some features of this spot can be seen in melanoma. Book an appointment with a doctor within two weeks to have "
     "it examined."},
    {"skin_cancer", "Possible skin cancer (not melanoma)", TRIAGE_DOCTOR_SOON,
     "Some features of this spot can be seen in basal or squamous cell carcinoma or in actinic keratosis (sun damage "
     "that can turn into cancer). Most are easily treated when found early: see a doctor within a few weeks."},
    {"harmless_growth", "Harmless-looking growth", TRIAGE_PHARMACIST_GP,
     "Looks like a seborrhoeic keratosis or a similar harmless growth, common with age, but a photo alone cannot "
     "clear it: show it to a pharmacist or GP, and a doctor if it bleeds, grows quickly or looks different from your "
     "other spots."},
    {"other", "Another skin condition", TRIAGE_DOCTOR_SOON,
     "This looks like a condition the screening cannot name with confidence. Please show it to a doctor."},
};

int screening_condition_count(void) { return (int)(sizeof conditions / sizeof conditions[0]); }
const screening_condition *screening_condition_at(int i) {
    return i >= 0 && i < screening_condition_count() ? &conditions[i] : NULL;
}

const char *screening_triage_code(screening_triage t) {
    static const char *const codes[] = {"self_care", "pharmacist_or_gp", "see_doctor_soon", "urgent"};
    return t >= TRIAGE_SELF_CARE && t <= TRIAGE_URGENT ? codes[t] : "see_doctor_soon";
}

const char *screening_triage_label(screening_triage t) {
    static const char *const labels[] = {"Self-care is usually enough.", "Ask a pharmacist or your GP.",
                                         "See a doctor soon (within a few days).",
                                         "See a doctor urgently (within two weeks, sooner if it changes)."};
    return labels[t >= TRIAGE_SELF_CARE && t <= TRIAGE_URGENT ? t : TRIAGE_DOCTOR_SOON];
}

static int by_code(const char *code) {
    for (int i = 0; i < screening_condition_count(); i++)
        if (!strcmp(conditions[i].code, code)) return i;
    return screening_condition_count() - 1;
}

/* Label → condition. Labels not listed are "other". */
static const struct {
    const char *label, *condition;
} groups[] = {
    /* skin-infections-8 */
    {"athletes-foot", "fungal"},
    {"nail-fungus", "fungal"},
    {"ringworm", "fungal"},
    {"cellulitis", "bacterial"},
    {"impetigo", "bacterial"},
    {"chickenpox", "viral"},
    {"shingles", "viral"},
    {"cutaneous-larva-migrans", "parasitic"},
    /* isic-melanoma-10k */
    {"benign", "benign_mole"},
    {"malignant", "melanoma"},
    /* dermnetnz */
    {"Tinea_pedis", "fungal"},
    {"Onychomycosis", "fungal"},
    {"Pityriasis_versicolor", "fungal"},
    {"Non-albicans_candida_infections", "fungal"},
    {"Impetigo", "bacterial"},
    {"Pyoderma", "bacterial"},
    {"Atypical_mycobacterial_infection", "bacterial"},
    {"Necrotising_fasciitis", "bacterial"},
    {"Paronychia", "bacterial"},
    {"Herpes_simplex", "viral"},
    {"Herpes_zoster", "viral"},
    {"Molluscum_contagiosum", "viral"},
    {"Measles", "viral"},
    {"Orf", "viral"},
    {"Papular_acrodermatitis_of_childhood", "viral"},
    {"Scabies", "parasitic"},
    {"Leishmaniasis", "parasitic"},
    {"Atopic_dermatitis", "eczema"},
    {"Discoid_eczema", "eczema"},
    {"Hand_dermatitis", "eczema"},
    {"Venous_eczema", "eczema"},
    {"Napkin_dermatitis", "eczema"},
    {"Lichen_simplex", "eczema"},
    {"Psoriasis", "psoriasis"},
    {"Facial_psoriasis", "psoriasis"},
    {"Genital_psoriasis", "psoriasis"},
    {"Generalised_pustular_psoriasis", "psoriasis"},
    {"Palmoplantar_pustulosis", "psoriasis"},
    {"Acne_vulgaris", "acne_rosacea"},
    {"Rosacea", "acne_rosacea"},
    {"Periorificial_dermatitis", "acne_rosacea"},
    {"Melanocytic_naevus", "benign_mole"},
    {"Blue_nevus", "benign_mole"},
    {"Acral_lentiginous_melanoma", "melanoma"},
    {"Amelanotic_melanoma", "melanoma"},
    {"Melanoma_in_situ", "melanoma"},
    {"Basal_cell_carcinoma", "skin_cancer"},
    {"Squamous_cell_carcinoma", "skin_cancer"},
    {"Actinic_keratosis", "skin_cancer"},
    /* Solar lentigo stays "other": lentigo maligna looks like it. */
    {"Sebaceous_hyperplasia", "harmless_growth"},
    /* pad-ufes-20-subset (smartphone photos) */
    {"NEV", "benign_mole"},
    {"MEL", "melanoma"},
    {"BCC", "skin_cancer"},
    {"SCC", "skin_cancer"},
    {"ACK", "skin_cancer"},
    {"SEK", "harmless_growth"},
};

/* Melanoma, basal and squamous cell carcinoma, by their labels in each set.
 * Actinic keratosis is grouped with skin cancer for the advice (it is
 * treated because it can become one) but is not itself a cancer. */
bool screening_is_malignant(const char *cls) {
    static const char *const malignant[] = {"malignant",
                                            "Acral_lentiginous_melanoma",
                                            "Amelanotic_melanoma",
                                            "Melanoma_in_situ",
                                            "Basal_cell_carcinoma",
                                            "Squamous_cell_carcinoma",
                                            "MEL",
                                            "BCC",
                                            "SCC"};
    for (size_t i = 0; i < sizeof malignant / sizeof malignant[0]; i++)
        if (!strcmp(malignant[i], cls)) return true;
    return false;
}

int screening_condition_of(const char *set, const char *cls) {
    /* a clinician's label is a condition code already */
    if (set && !strcmp(set, SCREENING_EXAMPLES_SET)) {
        int c = screening_condition_index(cls);
        return c >= 0 ? c : by_code("other");
    }
    /* label names do not collide across the other sets */
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
        if (!strcmp(groups[i].label, cls)) return by_code(groups[i].condition);
    return by_code("other");
}
