"""The demo's measurements across the model zoo: per-item scores that findings pair.

Every function here returns, besides a summary number, the per-item values it
averages (per image, per query, per pair), so that a gain between two models or two
methods is a paired bootstrap over the same items (``_intervals``). The items are
drawn once, from ``random_state``, and are the same for every model.
"""

import numpy as np

from .._math import l2_normalize
from ._common import logger
from ._intervals import N_RESAMPLES, bootstrap_interval, gain

# Bins of the cosine-similarity histograms whose overlap is an indicator (seed 002, Fig. 2).
HISTOGRAM_BINS = np.linspace(-1.0, 1.0, 51)


def fix_articles(text):
    """``"a orange"`` → ``"an orange"`` (prompts filled with a class name)."""
    import re

    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def class_weights(encode_text, prompt_names, templates):
    """Each class's normalised mean of its normalised prompt embeddings, and the prompts.

    Returns ``(weights (n_classes, d), prompt_rows (n_classes, n_templates, d))``.
    """
    prompts = [fix_articles(t.format(name)) for name in prompt_names for t in templates]
    rows = l2_normalize(np.asarray(encode_text(prompts), dtype=np.float64))
    rows = rows.reshape(len(prompt_names), len(templates), -1)
    return l2_normalize(rows.mean(axis=1)), rows


def correct_per_image(images, weights, y_idx):
    """1.0 where the nearest class weight (cosine) is the image's class, else 0.0."""
    predicted = np.argmax(l2_normalize(np.asarray(images, dtype=np.float64)) @ weights.T, axis=1)
    return (predicted == y_idx).astype(np.float64)


def recall_at_1_per_query(queries, gallery):
    """Hit (1.0 / 0.0) of each query whose own row (same index) is the gallery's nearest."""
    S = (
        l2_normalize(np.asarray(queries, dtype=np.float64))
        @ l2_normalize(np.asarray(gallery, dtype=np.float64)).T
    )
    return (np.argmax(S, axis=1) == np.arange(len(S))).astype(np.float64)


def mean_interval(values):
    """``{"mean", "ci95"}`` of per-item values (bootstrap over the items)."""
    return gain(*bootstrap_interval(values))


def ovi_zero_shot(enc, prompt_rows, y_idx, n_steps, random_state):
    """Intra-modal zero-shot (Cross the Gap): OVI of each prompt, averaged per class.

    Every class prompt's text embedding is inverted into a pseudo-image feature
    (:class:`~skvlm.inversion.VisualInverter`, ⟨I, T⟩); a class's prototype is the
    normalised mean of its prompts' pseudo-images, and each image goes to the nearest
    prototype (image-image cosine). Returns the per-image correctness.
    """
    from ._retrieval import _invert

    n_classes, n_templates, d = prompt_rows.shape
    pseudo = _invert(
        "text",
        prompt_rows.reshape(-1, d).astype(np.float32),
        enc["encoder"],
        {"n_steps": n_steps},
        random_state,
    )
    pseudo = l2_normalize(np.asarray(pseudo, dtype=np.float64)).reshape(n_classes, n_templates, d)
    prototypes = l2_normalize(pseudo.mean(axis=1))
    return correct_per_image(enc["images"], prototypes, y_idx)


def draw_pairs(labels, n_pairs, random_state):
    """Index pairs (i ≠ j) drawn once for every model: same-class, different-class, any.

    Returns ``{"same": (i, j), "different": (i, j), "any": (i, j)}``, ``n_pairs`` each
    (fewer same-class pairs only if the labels allow fewer).
    """
    rng = np.random.default_rng(random_state)
    labels = np.asarray(labels)
    n = len(labels)
    i = rng.integers(0, n, 8 * n_pairs)
    j = rng.integers(0, n, 8 * n_pairs)
    keep = i != j
    i, j = i[keep], j[keep]
    same = labels[i] == labels[j]
    out = {
        "same": (i[same][:n_pairs], j[same][:n_pairs]),
        "different": (i[~same][:n_pairs], j[~same][:n_pairs]),
        "any": (i[:n_pairs], j[:n_pairs]),
    }
    m = min(len(out["same"][0]), len(out["different"][0]))
    out["same"] = (out["same"][0][:m], out["same"][1][:m])
    out["different"] = (out["different"][0][:m], out["different"][1][:m])
    return out


def pair_cosines(enc, pairs):
    """Cosines of the drawn pairs: same / different class (image-image), and image-image
    vs image-text on the same random pairs (``None`` without a text tower)."""
    images = l2_normalize(np.asarray(enc["images"], dtype=np.float64))

    def cos(A, B, ij):
        return np.sum(A[ij[0]] * B[ij[1]], axis=1)

    out = {
        "same": cos(images, images, pairs["same"]),
        "different": cos(images, images, pairs["different"]),
        "image_image": cos(images, images, pairs["any"]),
        "image_text": None,
    }
    if enc.get("captions") is not None:
        captions = l2_normalize(np.asarray(enc["captions"], dtype=np.float64))
        out["image_text"] = cos(images, captions, pairs["any"])
    return out


def histogram_overlap(a, b, bins=HISTOGRAM_BINS):
    """Σ_bins min(p, q) of two normalised histograms: 1 = identical, 0 = disjoint."""
    n_bins = len(bins) - 1
    p = np.bincount(_bin_index(a, bins), minlength=n_bins) / max(len(a), 1)
    q = np.bincount(_bin_index(b, bins), minlength=n_bins) / max(len(b), 1)
    return float(np.minimum(p, q).sum())


def _bin_index(values, bins=HISTOGRAM_BINS):
    return np.clip(np.searchsorted(bins, values, side="right") - 1, 0, len(bins) - 2)


def overlap_statistic(terms, *, n_resamples=N_RESAMPLES, random_state=0):
    """``Σ_k sign_k · overlap(a_k, b_k)`` and its basic bootstrap 95 % interval.

    ``terms`` is a list of ``(sign, a, b)``, every array of the same length n: row i
    of each is resampled together (the same pairs for both models of a difference),
    as :func:`~skvlm.studies._intervals.bootstrap_statistic` does; vectorised with
    bin counts, so 2000 resamples of thousands of pairs take a fraction of a second.
    """
    n = len(terms[0][1])
    value = sum(sign * histogram_overlap(a, b) for sign, a, b in terms)
    if n < 2:
        return gain(value, None)
    n_bins = len(HISTOGRAM_BINS) - 1
    indexed = [(sign, _bin_index(a), _bin_index(b)) for sign, a, b in terms]
    rng = np.random.default_rng(random_state)
    draws = np.empty(n_resamples)
    for start in range(0, n_resamples, 128):
        size = min(128, n_resamples - start)
        rows = rng.integers(0, n, (size, n))
        offset = (n_bins * np.arange(size))[:, None]
        total = np.zeros(size)
        for sign, a, b in indexed:
            p = np.bincount((a[rows] + offset).ravel(), minlength=size * n_bins)
            q = np.bincount((b[rows] + offset).ravel(), minlength=size * n_bins)
            total += sign * np.minimum(p, q).reshape(size, n_bins).sum(axis=1) / n
        draws[start : start + size] = total
    # The basic (reverse-percentile) interval 2·value − quantiles: resampling adds noise
    # to both histograms, which lowers every resampled overlap, so the plain percentile
    # interval would sit below the measured value. The overlap of two finite samples'
    # histograms is itself biased low, so the basic interval (bias-corrected) may sit
    # above it; in a difference of two models on the same pairs the biases cancel.
    low, high = 2 * value - np.percentile(draws, [97.5, 2.5])
    return gain(float(value), (float(low), float(high)))


def histogram_indicators(cosines):
    """The two histogram indicators of seed 002 (Fig. 2, 5) with bootstrap intervals.

    ``class_overlap``: overlap of the same-class and different-class image-image
    histograms; ``modality_overlap``: overlap of the image-image and image-text
    histograms of the same random pairs (None without a text tower).
    """
    out = {"class_overlap": overlap_statistic([(1, cosines["same"], cosines["different"])])}
    out["modality_overlap"] = (
        None
        if cosines["image_text"] is None
        else overlap_statistic([(1, cosines["image_image"], cosines["image_text"])])
    )
    return out


def indicator_difference(cos_a, cos_b, kind):
    """``indicator(a) - indicator(b)`` on the same pairs, paired bootstrap.

    ``kind`` is ``"class_overlap"`` or ``"modality_overlap"``; None when a model
    lacks what the indicator needs.
    """
    keys = ("same", "different") if kind == "class_overlap" else ("image_image", "image_text")
    if any(c[k] is None for c in (cos_a, cos_b) for k in keys):
        return None
    return overlap_statistic(
        [(1, cos_a[keys[0]], cos_a[keys[1]]), (-1, cos_b[keys[0]], cos_b[keys[1]])]
    )


def image_only_fewshot(encoded, labels, sizes, random_state, tune, selection="best"):
    """NearestPrototype and LDA on the images alone (no text), for every model.

    The same labels and seeds give every model the same supports (seed 002, Tab. 2).
    Returns one runs DataFrame with a ``model`` column.
    """
    from ._common import pandas
    from ._fewshot import run_fewshot_study

    frames = []
    for model, enc in encoded.items():
        logger.info(f"{model}: image-only few-shot (prototype, LDA)")
        runs = run_fewshot_study(
            enc["images"],
            labels,
            methods=["prototype", "lda"],
            shots=sizes["shots"],
            seeds=[random_state + s for s in sizes["seeds"]],
            tune=tune,
            selection=selection,
        )
        runs.insert(0, "model", model)
        frames.append(runs)
    return pandas().concat(frames, ignore_index=True)


def paired_model_gain(runs, method, model, baseline):
    """Per-seed accuracy gain of ``model`` over ``baseline`` (mean over shots), t interval."""
    from ._intervals import t_interval

    part = runs[runs["method"] == method]
    table = part.pivot_table(index=["seed", "shots"], columns="model", values="acc1")
    if model not in table or baseline not in table:
        return None
    per_seed = (table[model] - table[baseline]).dropna().groupby(level="seed").mean()
    return gain(*t_interval(per_seed.to_numpy()))
