/* Safety-first triage: a screening tool that reassures wrongly is worse
 * than none. The top condition proposes; the risk of a cancer disposes.
 *
 * Why thresholds on probabilities and not only the top class: a melanoma
 * that the model ranks second at 0.3 is still a melanoma in three photos of
 * ten like it. The referral threshold is chosen for ≥ 95 % sensitivity on
 * held-back malignant lesions of every source (head.c, screening_fit_risk),
 * so many referrals of moles are false alarms by design; that is the trade
 * the product makes.
 *
 * Why no answer is ever "self-care": no condition of the table has it
 * (conditions.c), and every rule here only raises the advice. A photo alone
 * never sends a spot home: earlier models gave self-care to a mole when
 * P(benign) cleared a threshold fitted on held-back photos, and on sources
 * they had never seen that threshold did not hold (source-out protocol: 74
 * of 5,100 ISIC melanomas; the outside test: two lentigo maligna); acne went
 * home too, and a basal cell carcinoma taken for acne with it (DermNet test
 * split). The lowest advice is a pharmacist or GP. */
#include "screening/screening.h"

#include <string.h>

int screening_condition_index(const char *code) {
    for (int i = 0; i < screening_condition_count(); i++)
        if (!strcmp(screening_condition_at(i)->code, code)) return i;
    return -1;
}

screening_triage screening_decide_triage(const float *probs, bool confident, const screening_risk *risk,
                                         screening_why *why) {
    int nc = screening_condition_count(), top = 0;
    for (int c = 1; c < nc; c++)
        if (probs[c] > probs[top]) top = c;
    int mel = screening_condition_index("melanoma"), sc = screening_condition_index("skin_cancer");
    int mole = screening_condition_index("benign_mole"), growth = screening_condition_index("harmless_growth");
    float p_mel = mel >= 0 ? probs[mel] : 0, p_cancer = p_mel + (sc >= 0 ? probs[sc] : 0);
    screening_triage t = screening_condition_at(top)->triage;
    *why = SCREENING_WHY_TOP;
    if (p_mel >= risk->melanoma_above) {
        *why = SCREENING_WHY_MELANOMA_RISK;
        return TRIAGE_URGENT;
    }
    if (p_cancer >= risk->cancer_above && t < TRIAGE_DOCTOR_SOON) {
        *why = SCREENING_WHY_CANCER_RISK;
        return TRIAGE_DOCTOR_SOON;
    }
    if (!confident && t < TRIAGE_DOCTOR_SOON) {
        *why = SCREENING_WHY_UNSURE;
        return TRIAGE_DOCTOR_SOON;
    }
    /* A spot or growth the model is not sure is harmless: a doctor. */
    if ((top == mole || top == growth) && t < TRIAGE_DOCTOR_SOON) {
        float benign = (mole >= 0 ? probs[mole] : 0) + (growth >= 0 ? probs[growth] : 0);
        if (benign < risk->benign_sure) {
            *why = SCREENING_WHY_LESION_NOT_SURE;
            return TRIAGE_DOCTOR_SOON;
        }
    }
    return t;
}

const char *screening_why_code(screening_why w) {
    switch (w) {
    case SCREENING_WHY_TOP: return "top_condition";
    case SCREENING_WHY_UNSURE: return "unsure";
    case SCREENING_WHY_MELANOMA_RISK: return "melanoma_risk";
    case SCREENING_WHY_CANCER_RISK: return "cancer_risk";
    case SCREENING_WHY_LESION_NOT_SURE: return "lesion_not_sure";
    }
    return "unsure";
}

const char *screening_why_text(screening_why w) {
    switch (w) {
    case SCREENING_WHY_TOP: return "";
    case SCREENING_WHY_UNSURE: return "The screening is not sure what this is, so a professional should look at it.";
    case SCREENING_WHY_MELANOMA_RISK:
        return "Whatever it most looks like, the screening cannot rule out a melanoma in this photo: please have it "
               "examined by a doctor within two weeks.";
    case SCREENING_WHY_CANCER_RISK:
        return "The screening cannot rule out a skin cancer in this photo: please show it to a doctor soon.";
    case SCREENING_WHY_LESION_NOT_SURE:
        return "The screening is not sure this spot is harmless: please have it checked by a doctor.";
    }
    return "";
}
