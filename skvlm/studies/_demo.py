"""``python -m skvlm demo``: the seed papers' studies on the shipped tiny models and scenes."""

import time
import warnings
from pathlib import Path

import numpy as np

from .. import __version__
from .._text import class_text_embeddings
from ..retrieval import recall_at_k
from ._common import logger, pandas, progress_to_stderr
from ._diagnose import diagnose_embeddings
from ._fewshot import run_fewshot_study, summarize_fewshot
from ._findings import fewshot_summary_dict, findings, model_gains, retrieval_summary_dict
from ._report import write_report
from ._retrieval import run_retrieval_study

# Prompt templates for the scene factors, written with words of make_scenes' captions
# (the only vocabulary the tiny models know).
_SCENE_TEMPLATES = {
    "shape": ["a photo of a {}.", "a {}.", "there is a {}.", "this is a {}."],
    "colour": ["a photo of a {} shape.", "a {} object.", "there is a {} shape."],
    "background": ["a photo of a shape on a {} background.", "an object on a {} background."],
}
_OBJECT_TEMPLATES = ["a photo of a {}."]
# Words by which a caption names a background (make_scenes varies the phrasing).
_BACKGROUND_WORDS = {
    "dark": ("dark", "black"),
    "light": ("light", "white"),
    "striped": ("striped", "stripes"),
    "dotted": ("dotted", "dots"),
    "noisy": ("noisy", "noise"),
}

# (separate towers, shared towers) model pairs the AlignCLIP claim compares, in order.
_SHARED_PAIRS = (("skvlm-tiny", "skvlm-tiny-shared"), ("skvlm-tiny", "skvlm-tiny-align"))

_DEMO_SIZES = {
    False: {"n_scenes": 3000, "n_queries": 200, "oti_steps": 150, "ovi_steps": 300,
            "shots": (1, 2, 4, 8, 16), "seeds": (0, 1, 2), "recover": True},
    True: {"n_scenes": 600, "n_queries": 24, "oti_steps": 20, "ovi_steps": 20,
           "shots": (1, 2, 4, 8, 16), "seeds": (0, 1, 2), "recover": False},
}


def _scene_templates(factor):
    return _SCENE_TEMPLATES.get(factor, ["a photo of a {}."])


def _mentions(caption, factor, value):
    """Whether ``caption`` names ``value`` of ``factor`` (so text→text has a label)."""
    words = set(caption.lower().replace(".", " ").replace(",", " ").split())
    if factor == "background":
        return any(w in words for w in _BACKGROUND_WORDS.get(value, (value,)))
    return all(w in words for w in str(value).lower().split())



def _make_scenes(n_scenes, random_state):
    from ..datasets import make_scenes  # pandas: imported when a demo runs

    return make_scenes(n_scenes, random_state=random_state)


def _encode_model(model, images, captions, device):
    """Image and caption embeddings of one model, or (None, reason) if it cannot load."""
    from ..encoders import CLIPEncoder

    encoder = CLIPEncoder(model=model, device=device, batch_size=256)
    logger.info(f"{model}: encoding {len(images)} images and their captions")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            image_emb = encoder.encode_images(images)
            caption_emb = encoder.encode_text(captions)
    except (ValueError, OSError, ImportError, RuntimeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    notes = sorted({str(w.message) for w in caught if issubclass(w.category, UserWarning)})
    return {"encoder": encoder, "images": image_emb, "captions": caption_emb, "notes": notes}, None


def _zero_shot_quality(encoded, factors, captions):
    """Zero-shot accuracy per factor and paired image↔text recall@k."""

    encoder = encoded["encoder"]
    out = {"zero_shot_acc1": {}, "recall_at_k": {}}
    for factor in ("shape", "colour", "background"):
        if factor not in factors:
            continue
        y = factors[factor].astype(str).to_numpy()
        names, y_idx = np.unique(y, return_inverse=True)
        W = class_text_embeddings(encoder.encode_text, list(names), _scene_templates(factor))
        predicted = np.argmax(encoded["images"] @ W.T, axis=1)
        out["zero_shot_acc1"][factor] = float(np.mean(predicted == y_idx))
    ids = np.arange(len(captions))
    ks = [1, 5, 10]
    i2t = recall_at_k(encoded["images"], ids, encoded["captions"], ids, k=ks)
    t2i = recall_at_k(encoded["captions"], ids, encoded["images"], ids, k=ks)
    out["recall_at_k"] = {
        "image_to_text": {str(k): float(v) for k, v in i2t.items()},
        "text_to_image": {str(k): float(v) for k, v in t2i.items()},
    }
    out["chance_recall_at_1"] = 1.0 / len(captions)
    return out




def run_demo(out, *, quick=False, models=("skvlm-tiny", "skvlm-tiny-shared"), device="auto",
             tune=True, random_state=0, verbose=1):
    """Run the seed papers' studies on the shipped tiny models and write a report.

    On ``make_scenes`` (held-out scenes, never seen in training), with the first model
    of ``models``: (a) the few-shot study, shots 1/2/4/8/16 x 3 seeds, methods
    zero-shot / NearestPrototype / NearestPrototype + PCA← / LDA / Tip-Adapter / Tip-X,
    for two labelings, ``shape`` (the concept the object names describe) and
    ``background`` (one they do not); (b) the retrieval study, image→image and
    text→text mAP for raw features, OTI / OVI and PCA←; and for every model (c) the
    diagnostics: zero-shot accuracy, image↔text recall@k, modality gap, alignment
    score, similarity histograms and the recovery of S_intra from S_inter.

    PCA← projects onto the principal directions of the *object vocabulary*, the 64
    "colour shape" names (the analogue of the ImageNet class names the paper uses),
    with ``n_components = d // 2`` as in the paper.

    Parameters
    ----------
    out : str or path
        Report folder (created): ``report.md``, ``summary.json``, CSVs and PNGs.
    quick : bool, default=False
        Fewer scenes, queries and inversion steps (well under 2 minutes on 2 cores).
    models : sequence of str, default=("skvlm-tiny", "skvlm-tiny-shared")
        The first runs the studies; all get the diagnostics.
    device : str, default="auto"
    tune : bool, default=True
        Choose the few-shot methods' hyper-parameters on validation shots (min(k, 4)
        per class, drawn from the rows outside the support; the default grids).
    random_state : int, default=0
        Seeds the scenes (offset from the training seeds), splits, queries and inverters.
    verbose : int, default=1
        Progress lines on stderr (always logged to the ``"skvlm.studies"`` logger).

    Returns
    -------
    summary : dict
        What ``summary.json`` holds.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = _DEMO_SIZES[bool(quick)]
    with progress_to_stderr(verbose):
        start = time.perf_counter()
        # Scenes drawn from a seed far from those the models were trained on.
        scene_seed = 10_000 + int(random_state)
        logger.info(f"generating {sizes['n_scenes']} held-out scenes (seed {scene_seed})")
        scenes = _make_scenes(sizes["n_scenes"], random_state=scene_seed)
        encoded, unavailable = _encode_models(models, scenes, device)
        main_model = next(iter(encoded))
        main = encoded[main_model]
        object_names = [f"{c} {s}" for c in scenes.factor_names["colour"]
                        for s in scenes.factor_names["shape"]]
        pca_text = class_text_embeddings(main["encoder"].encode_text, object_names,
                                         _OBJECT_TEMPLATES)
        labelings = [f for f in ("shape", "background") if f in scenes.factors]
        fewshot = _demo_fewshot(main, scenes.factors, labelings, pca_text, sizes, random_state,
                                tune)
        retrieval = _demo_retrieval(main, scenes, labelings, pca_text, sizes, random_state)
        diagnostics, distributions = _demo_diagnostics(encoded, scenes, sizes, random_state)
        config = {"study_model": main_model, "models": list(models),
                  "n_scenes": sizes["n_scenes"], "scene_seed": scene_seed,
                  **{k: sizes[k] for k in ("shots", "seeds", "n_queries", "oti_steps",
                                           "ovi_steps")}}
        config["tune"] = bool(tune)
        comparison = _model_comparison(encoded)
        summary = _demo_summary(config, quick, unavailable, fewshot, retrieval, diagnostics,
                                comparison)
        summary["elapsed_s"] = time.perf_counter() - start
        write_report(out, summary, fewshot["runs"], fewshot["summary"], retrieval["results"],
                     diagnostics, distributions)
    return summary


def _encode_models(models, scenes, device):
    """{model: embeddings} of every model that loads, {model: reason} of the others."""
    encoded, unavailable = {}, {}
    for model in models:
        result, reason = _encode_model(model, scenes.images, list(scenes.captions), device)
        if result is None:
            unavailable[model] = reason
            logger.info(f"{model}: unavailable ({reason})")
        else:
            encoded[model] = result
    if not encoded:
        raise RuntimeError(f"No model could be loaded: {unavailable}")
    return encoded, unavailable


def _demo_fewshot(main, factors, labelings, pca_text, sizes, random_state, tune):
    """The few-shot study of the study model, once per labeling."""
    pd = pandas()
    all_runs, skipped, notes = [], {}, []
    for labeling in labelings:
        y = factors[labeling].astype(str).to_numpy()
        names = list(np.unique(y))
        W = class_text_embeddings(main["encoder"].encode_text, names, _scene_templates(labeling))
        logger.info(f"few-shot study, labeling '{labeling}' ({len(names)} classes)")
        runs = run_fewshot_study(
            main["images"], y, text_weights=W, pca_text_embeddings=pca_text,
            shots=sizes["shots"], seeds=[random_state + s for s in sizes["seeds"]], tune=tune,
        )
        runs.insert(0, "labeling", labeling)
        all_runs.append(runs)
        skipped.update({f"few-shot {k}": v for k, v in runs.attrs["skipped"].items()})
        notes += [f"few-shot ({labeling}) {w}" for w in runs.attrs["warnings"]]
    runs = pd.concat(all_runs, ignore_index=True)
    return {"runs": runs, "summary": summarize_fewshot(runs), "skipped": skipped, "notes": notes}


def _demo_retrieval(main, scenes, labelings, pca_text, sizes, random_state):
    """The retrieval study of the study model, once per labeling."""
    pd = pandas()
    captions = list(scenes.captions)
    results, skipped = [], {}
    for labeling in labelings:
        y = scenes.factors[labeling].astype(str).to_numpy()
        mentions = np.array([_mentions(c, labeling, v) for c, v in zip(captions, y)])
        logger.info(f"retrieval study, labeling '{labeling}' "
                    f"({mentions.sum()} captions name their {labeling})")
        has_text = mentions.sum() >= 4
        res = run_retrieval_study(
            main["images"], y,
            text_emb=main["captions"][mentions] if has_text else None,
            text_labels=y[mentions] if has_text else None,
            pca_text_embeddings=pca_text, encoder=main["encoder"],
            n_queries=sizes["n_queries"],
            oti_params={"n_steps": sizes["oti_steps"]},
            ovi_params={"n_steps": sizes["ovi_steps"]},
            random_state=random_state,
        )
        res.insert(0, "labeling", labeling)
        results.append(res)
        skipped.update({f"retrieval {k}": v for k, v in res.attrs["skipped"].items()})
    return {"results": pd.concat(results, ignore_index=True), "skipped": skipped}


def _demo_diagnostics(encoded, scenes, sizes, random_state):
    """The geometry and zero-shot diagnostics of every model, and its similarity samples."""
    diagnostics, distributions = {}, {}
    labels = scenes.factors["shape"].astype(str).to_numpy()
    for model, enc in encoded.items():
        logger.info(f"{model}: diagnostics")
        diag = diagnose_embeddings(enc["images"], enc["captions"], labels,
                                   recover=sizes["recover"], random_state=random_state)
        distributions[model] = diag.pop("distributions")
        diag.update(_zero_shot_quality(enc, scenes.factors, list(scenes.captions)))
        diag["notes"] = enc["notes"]
        diagnostics[model] = diag
    return diagnostics, distributions


def _model_comparison(encoded):
    """(base, other, paired gains) of the first shared-tower pair of models encoded here."""
    for base, other in _SHARED_PAIRS:
        if base in encoded and other in encoded:
            return base, other, model_gains(encoded[base], encoded[other])
    return None


def _demo_summary(config, quick, unavailable, fewshot, retrieval, diagnostics, comparison):
    """What ``summary.json`` holds (``elapsed_s`` and ``files`` are added by the caller)."""
    return {
        "title": "skvlm demo report",
        "description": (
            f"`python -m skvlm demo{' --quick' if quick else ''}`: the few-shot and retrieval "
            f"studies of the seed papers on `{config['study_model']}` and {config['n_scenes']} "
            "held-out `make_scenes` images, and the geometry diagnostics of every shipped "
            "model. PCA← projects onto the principal directions of the 64 'colour shape' "
            "object names (the analogue of ImageNet class names), keeping d // 2 components."
        ),
        "protocol": ("Support: k shots per class; " + (
            "hyper-parameters chosen on min(k, 4) validation shots per class drawn from the "
            "other scenes, over the 'default' grids; scored on every scene in neither set."
            if config["tune"] else "every method at its default hyper-parameters; scored on "
            "every other scene.")),
        "caveat": (" The tiny models and generated scenes are a toy world: the verdicts "
                   "describe this setting, not CLIP at scale."),
        "skvlm_version": __version__,
        "quick": bool(quick),
        "elapsed_s": None,
        "config": {**config, "shots": list(config["shots"]), "seeds": list(config["seeds"])},
        "unavailable": unavailable,
        "skipped": {**fewshot["skipped"], **retrieval["skipped"]},
        "models": diagnostics,
        "fewshot": fewshot_summary_dict(fewshot["summary"], fewshot["runs"]),
        "retrieval": retrieval_summary_dict(retrieval["results"]),
        "findings": findings(fewshot["runs"], retrieval["results"], diagnostics,
                             comparison=comparison),
        "notes": fewshot["notes"],
    }
