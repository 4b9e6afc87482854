"""The demo's findings across the model zoo, and the headroom numbers of issue 14.

Each finding: the claim (with its source), the gains it rests on as
``{"mean", "ci95"}`` (paired: the same images, queries, pairs or splits for both
sides), the measured values behind them, and the verdict of ``_intervals.verdict``.
A claim of "no difference" (seed 002) is stated as the hypothesis it tests, so the
rule still applies: seed 002 expects "no clear difference" there.
"""

import numpy as np

from ._findings import fewshot_gain, model_gains
from ._intervals import bootstrap_interval, gain, verdict
from ._retrieval import TASKS
from ._zoo import indicator_difference, paired_model_gain

CLIP, SLIP, SHARED, ALIGN, SSL = (
    "skvlm-tiny",
    "skvlm-tiny-slip",
    "skvlm-tiny-shared",
    "skvlm-tiny-align",
    "skvlm-tiny-ssl",
)
MAIN_LABELING = "shape"


def _finding(claim, gains, sign, **values):
    """A finding: ``gains`` (the names of its gain entries) decide the verdict."""
    return {
        "claim": claim,
        **gains,
        **values,
        "gains": list(gains),
        "expected_sign": sign,
        "verdict": verdict(list(gain_leaves(gains)), sign),
    }


def gain_leaves(gains):
    """Every ``{"mean", "ci95"}`` entry (or None) of a possibly nested dict of gains."""
    for value in gains.values():
        if value is None or "mean" in value:
            yield value
        else:
            yield from gain_leaves(value)


def zoo_findings(measured):
    """Every claim measured across models (the study model's own are in ``findings``)."""
    out = {}
    out["intra_modal_zero_shot_is_worse"] = _ovi_zero_shot_finding(measured["ovi"])
    out.update(_oti_shrink_findings(measured))
    out.update(_histogram_findings(measured))
    out["image_only_fewshot_clip_vs_ssl"] = _image_only_finding(measured)
    out["lda_ape_beat_tipx_coder"] = _adapter_finding(measured["fewshot"]["runs"])
    out.update(_alignclip_findings(measured))
    return {k: v for k, v in out.items() if v is not None}


def _ovi_zero_shot_finding(ovi):
    gains, values = {}, {}
    for labeling, m in ovi.items():
        gains[labeling] = gain(*bootstrap_interval(m["inter_correct"], m["intra_correct"]))
        values[labeling] = {
            "inter_modal": float(m["inter_correct"].mean()),
            "intra_modal_ovi": float(m["intra_correct"].mean()),
        }
    return _finding(
        "zero-shot classification done intra-modally (OVI of the class prompts as image "
        "prototypes) is less accurate than inter-modal zero-shot (Cross the Gap, Sec. 5)",
        {"acc1_gain_inter_over_intra": gains},
        1,
        acc1=values,
    )


def _oti_gains(zoo, model):
    """{labeling: OTI-minus-raw AP per query} of one model's image→image rows."""
    part = zoo[(zoo["model"] == model) & (zoo["task"] == TASKS["image"])]
    out = {}
    for labeling, rows in part.groupby("labeling", sort=False):
        ap = dict(zip(rows["method"], rows["ap_per_query"]))
        out[labeling] = np.asarray(ap["inversion"]) - np.asarray(ap["raw"])
    return out


def _oti_shrink_findings(measured):
    zoo, main = measured["retrieval"]["zoo"], measured["main_model"]
    base = _oti_gains(zoo, main)
    out = {}
    for key, other, why in (
        ("oti_gain_smaller_with_intra_modal_term", SLIP, "an image-image term in pre-training"),
        ("oti_gain_smaller_with_smaller_gap", ALIGN, "a smaller modality gap (AlignCLIP)"),
    ):
        if other == main or other not in set(zoo["model"]):
            continue
        theirs = _oti_gains(zoo, other)
        gains = {lab: gain(*bootstrap_interval(base[lab], theirs[lab])) for lab in base}
        values = {
            lab: {main: float(np.nanmean(base[lab])), other: float(np.nanmean(theirs[lab]))}
            for lab in base
        }
        out[key] = _finding(
            f"the OTI gain over raw image queries is smaller for {other} ({why}) than for "
            f"{main} (Cross the Gap, Sec. 6)",
            {"mAP_gain_difference": gains},
            1,
            oti_mAP_gain=values,
        )
    return out


def _histogram_findings(measured):
    hist, main = measured["histograms"], measured["main_model"]
    cosines, indicators = hist["cosines"], hist["indicators"]
    others = [m for m in (SLIP, SSL) if m in cosines and m != main]
    if not others:
        return {}
    class_gains = {
        m: indicator_difference(cosines[main], cosines[m], "class_overlap") for m in others
    }
    out = {
        "class_overlap_higher_without_intra_modal_term": _finding(
            f"same- and different-class image-image similarity histograms overlap more for the "
            f"inter-modal-only {main} than for intra-modal-trained models (the misalignment "
            "hypothesis' indicator; seed 002, Fig. 5 finds them alike)",
            {"class_overlap_difference": class_gains},
            1,
            class_overlap={m: indicators[m]["class_overlap"] for m in [main] + others},
        )
    }
    if SLIP in others:
        modality = indicator_difference(cosines[SLIP], cosines[main], "modality_overlap")
        out["modality_overlap_higher_with_intra_modal_term"] = _finding(
            f"image-image and image-text similarity histograms overlap more (a smaller gap "
            f"between them) for {SLIP}, trained with an image-image term, than for {main} "
            "(seed 002, Fig. 5 finds them alike)",
            {"modality_overlap_difference": modality},
            1,
            modality_overlap={m: indicators[m]["modality_overlap"] for m in (main, SLIP)},
        )
    return out


def _image_only_finding(measured):
    runs, main = measured["image_only"], measured["main_model"]
    if SSL not in set(runs["model"]):
        return None
    gains = {method: paired_model_gain(runs, method, main, SSL) for method in ("prototype", "lda")}
    at_16 = runs[runs["shots"] == runs["shots"].max()].groupby(["model", "method"])["acc1"].mean()
    return _finding(
        f"on image-image similarities alone (no text), the inter-modal-only {main} classifies "
        f"better than the image-only {SSL} (seed 002, Tab. 2: SigLIP above DINOv2)",
        {"acc1_gain": gains},
        1,
        acc1_at_max_shots={f"{m} {k}": float(v) for (m, k), v in at_16.items()},
    )


def _adapter_finding(runs):
    gains = {}
    for method in ("lda", "ape"):
        for baseline in ("tip_x", "coder"):
            g = fewshot_gain(runs, MAIN_LABELING, method, baseline)
            if g is not None:
                gains[f"{method}_minus_{baseline}"] = g
    if not gains:
        return None
    return _finding(
        "LDA and APE, on image embeddings, beat Tip-X and CODER, which avoid image-image "
        "similarities (seed 002, Fig. 6), labels = shape",
        {"acc1_gain": gains},
        1,
    )


def _alignclip_findings(measured):
    encoded, out = measured["encoded"], {}
    chain = [m for m in (CLIP, SHARED, ALIGN) if m in encoded]
    for base, other, key in (
        (CLIP, SHARED, "shared_towers_align_better"),
        (SHARED, ALIGN, "imsep_aligns_better"),
    ):
        if base in encoded and other in encoded:
            gains = model_gains(encoded[base], encoded[other])
            out[key] = _finding(
                f"{other} has a higher alignment score and a smaller modality gap than {base} "
                "(AlignCLIP, Tab. 1: CLIP → SharedCLIP → AlignCLIP)",
                gains,
                1,
                alignment_score={m: measured["diagnostics"][m]["alignment_score"] for m in chain},
                modality_gap={m: measured["diagnostics"][m]["modality_gap"] for m in chain},
            )
    zs = measured["zero_shot"]
    others = [m for m in (SHARED, ALIGN) if m in zs and CLIP in zs]
    if others:
        correct = {m: zs[m]["labelings"][MAIN_LABELING]["correct"] for m in [CLIP] + others}
        hits = {m: zs[m]["i2t_hits"] for m in [CLIP] + others}
        out["alignclip_keeps_downstream"] = _finding(
            f"the shared-tower models keep {CLIP}'s zero-shot accuracy (shape) and image→text "
            "recall@1 or improve them (AlignCLIP, Tab. 2-4)",
            {
                "zero_shot_acc1_gain": {
                    m: gain(*bootstrap_interval(correct[m], correct[CLIP])) for m in others
                },
                "image_to_text_R@1_gain": {
                    m: gain(*bootstrap_interval(hits[m], hits[CLIP])) for m in others
                },
            },
            1,
            zero_shot_acc1={m: float(v.mean()) for m, v in correct.items()},
            image_to_text_R1={m: float(v.mean()) for m, v in hits.items()},
        )
    return out


def headroom(measured):
    """The numbers issue 14's "What must hold" reads (measured, with the bounds it sets)."""
    diagnostics, runs = measured["diagnostics"], measured["fewshot"]["runs"]
    main = measured["main_model"]
    zs_main = diagnostics[main]["zero_shot_acc1"]
    means = runs.groupby(["labeling", "method", "shots"])["acc1"].mean()
    top = means.idxmax()
    at_max = means.xs(MAIN_LABELING, level="labeling")
    at_max = at_max[
        at_max.index.get_level_values("shots") == at_max.index.get_level_values("shots").max()
    ]
    best16 = at_max.drop(index="zeroshot", level="method", errors="ignore").idxmax()
    best_gap = float(at_max[best16] - zs_main[MAIN_LABELING])
    per_model = {}
    for model, d in diagnostics.items():
        if d.get("image_only"):
            continue
        zs, chance = d["zero_shot_acc1"][MAIN_LABELING], d["chance_zero_shot"][MAIN_LABELING]
        r1, chance_r = d["recall_at_k"]["image_to_text"]["1"], d["chance_recall_at_1"]
        per_model[model] = {
            "zero_shot_main": zs,
            "chance_main": chance,
            "zero_shot_over_2x_chance": zs >= 2 * chance,
            "image_to_text_R@1": r1,
            "chance_R@1": chance_r,
            "R@1_over_10x_chance": r1 >= 10 * chance_r,
        }
    return {
        "model": main,
        "main_labeling": MAIN_LABELING,
        "zero_shot_main": zs_main[MAIN_LABELING],
        "zero_shot_main_in_0.55_0.90": 0.55 <= zs_main[MAIN_LABELING] <= 0.90,
        "max_method_acc1": float(means[top]),
        "max_method_at": {"labeling": top[0], "method": top[1], "shots": int(top[2])},
        "max_method_acc1_at_most_0.97": float(means[top]) <= 0.97,
        "best_max_shot_method": best16[0],
        "best_max_shot_acc1": float(at_max[best16]),
        "best_max_shot_minus_zero_shot": best_gap,
        "best_max_shot_at_least_3_points_above_zero_shot": best_gap >= 0.03,
        "background_zero_shot": zs_main.get("background"),
        "background_zero_shot_below_0.95": (zs_main.get("background") or 0.0) < 0.95,
        "per_model": per_model,
    }
