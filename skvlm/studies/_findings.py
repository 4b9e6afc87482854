"""The numbers a report rests on: per-study summaries, gains and the verdict of each claim.

Nothing here formats text; the report writers (``_report``) only print what these
functions return, so editing a table cannot change a number.
"""

from ._retrieval import TASKS


def fewshot_summary_dict(summary, runs):
    """{labeling: {method: {shots: {acc1, acc1_std, acc1_per_seed, ...}}}}."""
    out = {}
    for r in summary.itertuples():
        per_seed = runs[
            (runs["labeling"] == r.labeling) & (runs["method"] == r.method) & (runs["shots"] == r.shots)
        ].sort_values("seed")
        out.setdefault(r.labeling, {}).setdefault(r.method, {})[str(r.shots)] = {
            "acc1": r.acc1,
            "acc1_std": r.acc1_std,
            "acc1_per_seed": per_seed["acc1"].tolist(),
            "mean_per_class_recall": r.mean_per_class_recall,
            "seeds": per_seed["seed"].tolist(),
        }
    return out


def retrieval_summary_dict(results):
    """{labeling: {task_key: {method: {mAP, mAP_at_R, R_precision, n_queries}}}}."""
    out = {}
    for r in results.itertuples():
        task = "image_to_image" if r.task == TASKS["image"] else "text_to_text"
        out.setdefault(r.labeling, {}).setdefault(task, {})[r.method] = {
            "mAP": r.mAP,
            "mAP_at_R": r.mAP_at_R,
            "R_precision": r.R_precision,
            "n_queries": r.n_queries,
            "n_gallery": r.n_gallery,
        }
    return out


def _mean_gain(summary, labeling, method, baseline):
    part = summary[summary["labeling"] == labeling].pivot_table(
        index="shots", columns="method", values="acc1"
    )
    if method not in part or baseline not in part:
        return None
    return float((part[method] - part[baseline]).mean())


def _retrieval_gain(results, labeling, task, method, baseline="raw"):
    part = results[(results["labeling"] == labeling) & (results["task"] == task)]
    values = dict(zip(part["method"], part["mAP"]))
    if method not in values or baseline not in values:
        return None
    return float(values[method] - values[baseline])


_TOLERANCE = 0.005  # differences below half a point (or 0.005 in cosine) count as none


def _verdict(gains, expected_sign, tol=_TOLERANCE):
    """Compare measured gains with the claimed sign.

    'holds' / 'does not hold' when every measured gain is at least ``tol`` in the
    claimed / the opposite direction, 'no clear difference' when all are smaller than
    ``tol``, 'mixed' otherwise, 'not measured' when there is no number.
    """
    measured = [g for g in gains if g is not None]
    if not measured:
        return "not measured"
    kinds = {"agree" if g * expected_sign >= tol and g != 0 else
             "disagree" if -g * expected_sign >= tol and g != 0 else "neutral"
             for g in measured}
    if kinds == {"agree"}:
        return "holds"
    if kinds == {"disagree"}:
        return "does not hold"
    if kinds == {"neutral"}:
        return "no clear difference"
    return "mixed"


# Prompt templates for the scene factors, written with words of make_scenes' captions


_LABELING_PHRASES = {
    "shape": "the shape, the concept the object names describe",
    "background": "the background, a concept the object names do not describe",
}


def findings(fewshot_summary, retrieval, diagnostics,
              expectations=(("shape", 1), ("background", -1))):
    """The seed claims, each with the numbers measured here and a verdict.

    ``expectations``: (labeling, expected sign of the PCA← gain) pairs.
    """
    findings = {}
    i2i, t2t = TASKS["image"], TASKS["text"]
    for labeling, sign in expectations:
        key = f"pca_{'helps' if sign > 0 else 'hurts'}_on_{labeling}"
        if fewshot_summary is None and retrieval is None:
            break
        fewshot_gain = (_mean_gain(fewshot_summary, labeling, "prototype_pca", "prototype")
                        if fewshot_summary is not None else None)
        retrieval_gain = (_retrieval_gain(retrieval, labeling, i2i, "pca")
                          if retrieval is not None else None)
        findings[key] = {
            "claim": (f"PCA← {'raises' if sign > 0 else 'lowers'} NearestPrototype accuracy and "
                      f"image→image mAP when the labels are "
                      f"{_LABELING_PHRASES.get(labeling, 'the class folders')} (seed 002, "
                      f"{'Tab. 2-3' if sign > 0 else 'the BDD100k ablation'})"),
            "fewshot_acc1_gain": fewshot_gain,
            "image_to_image_mAP_gain": retrieval_gain,
            "verdict": _verdict([fewshot_gain, retrieval_gain], sign),
        }
    if retrieval is not None:
        labelings = list(dict.fromkeys(retrieval["labeling"]))
        oti = {lab: _retrieval_gain(retrieval, lab, i2i, "inversion") for lab in labelings}
        findings["oti_beats_raw_image_retrieval"] = {
            "claim": "OTI query features retrieve images better than raw image features "
                     "(Cross the Gap, Tab. 3 of seed 002)",
            "image_to_image_mAP_gain": oti,
            "verdict": _verdict(list(oti.values()), 1),
        }
        ovi = {lab: _retrieval_gain(retrieval, lab, t2t, "inversion") for lab in labelings}
        if any(v is not None for v in ovi.values()) or (retrieval["task"] == t2t).any():
            findings["ovi_beats_raw_text_retrieval"] = {
                "claim": "OVI query features retrieve texts better than raw text features "
                         "(Cross the Gap)",
                "text_to_text_mAP_gain": ovi,
                "verdict": _verdict(list(ovi.values()), 1),
            }
        pca_vs_oti = {lab: (None if oti[lab] is None else
                            _retrieval_gain(retrieval, lab, i2i, "pca", "inversion"))
                      for lab in labelings}
        findings["pca_beats_oti"] = {
            "claim": "PCA← beats OTI on image→image retrieval (seed 002, Tab. 3)",
            "image_to_image_mAP_gain": pca_vs_oti,
            "verdict": _verdict(list(pca_vs_oti.values()), 1),
        }
    if diagnostics and "skvlm-tiny" in diagnostics and "skvlm-tiny-shared" in diagnostics:
        base, shared = diagnostics["skvlm-tiny"], diagnostics["skvlm-tiny-shared"]
        gain = shared["alignment_score"] - base["alignment_score"]
        findings["shared_model_aligns_better"] = {
            "claim": "the shared-parameter model trained with IMSep has a higher alignment "
                     "score and a smaller modality gap (AlignCLIP, Tab. 1)",
            "alignment_score_gain": gain,
            "modality_gap_reduction": base["modality_gap"] - shared["modality_gap"],
            "verdict": _verdict([gain, base["modality_gap"] - shared["modality_gap"]], 1),
        }
    errors = {m: d.get("recovery_max_abs_error") for m, d in (diagnostics or {}).items()}
    if any(e is not None for e in errors.values()):
        findings["intra_similarity_recoverable"] = {
            "claim": "image-image similarities are determined by image-text similarities "
                     "(seed 002, App. A): recovered to 1e-6",
            "recovery_max_abs_error": errors,
            "verdict": _verdict([None if e is None else 1e-6 - e for e in errors.values()], 1,
                                tol=0.0),
        }
    return findings

