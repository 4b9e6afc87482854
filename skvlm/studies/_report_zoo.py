"""The demo report's model-zoo parts: the five-model table, headroom, zoo figures and CSVs.

Like ``_report``, it prints numbers computed elsewhere (``summary`` and the demo's
``extras``); it computes none.
"""

import math

from ._methods import RETRIEVAL_METHODS


def _pct(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.1f}"


def _num(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3f}"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def zoo_figures(out, extras):
    """Write the zoo's CSVs and figures; {name: file name} of what was written."""
    written = {}
    runs = extras["image_only_runs"]
    runs.to_csv(out / "image_only_fewshot_runs.csv", index=False)
    written["image_only_csv"] = "image_only_fewshot_runs.csv"
    zoo = extras["zoo_retrieval"]
    zoo.drop(columns=["ap_per_query"], errors="ignore").to_csv(
        out / "zoo_retrieval.csv", index=False
    )
    written["zoo_retrieval_csv"] = "zoo_retrieval.csv"
    written["image_only"] = _image_only_figure(out, runs)
    written["zoo_retrieval"] = _zoo_retrieval_figure(out, zoo)
    written["map"] = _map_figure(out, extras["map"], extras["study_model"])
    return written


def _image_only_figure(out, runs):
    from ..plotting import plot_fewshot_curves

    labelled = runs.assign(method=runs["model"] + " " + runs["label"])
    ax = plot_fewshot_curves(
        labelled, band="ci95", title="image-only few-shot (no text), labels = shape"
    )
    ax.figure.set_size_inches(7.5, 4.5)
    ax.figure.savefig(out / "fewshot_image_only.png", dpi=110)
    return "fewshot_image_only.png"


def _zoo_retrieval_figure(out, zoo):
    from ..plotting import plot_retrieval_bars

    part = zoo[zoo["task"] == zoo["task"].iloc[0]]
    table = part.assign(
        group=part["model"] + ":\n" + part["labeling"],
        series=part["method"].map(RETRIEVAL_METHODS),
        value=part["mAP"],
        low=part["mAP_ci_low"],
        high=part["mAP_ci_high"],
    )
    ax = plot_retrieval_bars(table, title="image→image mAP per model [95 % interval]")
    ax.figure.savefig(out / "retrieval_models.png", dpi=110)
    return "retrieval_models.png"


def _map_figure(out, groups, model):
    from matplotlib.figure import Figure

    from ..plotting import plot_embedding_map

    fig = Figure(figsize=(10, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot_embedding_map(groups, method="pca", ax=left, title=f"{model}: PCA")
    plot_embedding_map(groups, method="tsne", ax=right, title=f"{model}: t-SNE")
    fig.savefig(out / "embedding_map.png", dpi=110)
    return "embedding_map.png"


def zoo_sections(summary, figures):
    """Markdown: headroom, the table of every model, and the zoo figures."""
    lines = _headroom_lines(summary["headroom"]) + _models_table(summary)
    if figures.get("image_only"):
        lines += [
            "Image-only few-shot accuracy of every model (NearestPrototype and LDA "
            "on image embeddings, no text; bands: 95 % t interval over seeds):",
            "",
            f"![image-only few-shot]({figures['image_only']})",
            "",
        ]
    if figures.get("zoo_retrieval"):
        lines += [
            "Image→image retrieval of the models whose OTI gains are compared (the "
            "same queries for every model):",
            "",
            f"![retrieval per model]({figures['zoo_retrieval']})",
            "",
        ]
    if figures.get("map"):
        lines += [
            "Image, caption and PCA←-projected image embeddings of the same scenes, "
            "reduced together to 2-D (seed 002, Fig. 7):",
            "",
            f"![embedding map]({figures['map']})",
            "",
        ]
    return lines


def _headroom_lines(h):
    rows = [
        [
            f"{h['model']} zero-shot, labels = {h['main_labeling']}",
            _pct(h["zero_shot_main"]),
            "55–90",
            h["zero_shot_main_in_0.55_0.90"],
        ],
        [
            f"highest method accuracy ({h['max_method_at']['method']}, "
            f"{h['max_method_at']['labeling']}, {h['max_method_at']['shots']} shots)",
            _pct(h["max_method_acc1"]),
            "≤ 97",
            h["max_method_acc1_at_most_0.97"],
        ],
        [
            f"best max-shot method ({h['best_max_shot_method']}) minus zero-shot",
            _pct(h["best_max_shot_minus_zero_shot"]),
            "≥ 3 pts",
            h["best_max_shot_at_least_3_points_above_zero_shot"],
        ],
        [
            "background zero-shot",
            _pct(h["background_zero_shot"]),
            "< 95",
            h["background_zero_shot_below_0.95"],
        ],
    ]
    for model, m in h["per_model"].items():
        rows.append(
            [
                f"{model} zero-shot vs 2× chance ({_pct(2 * m['chance_main'])})",
                _pct(m["zero_shot_main"]),
                "≥ 2× chance",
                m["zero_shot_over_2x_chance"],
            ]
        )
        rows.append(
            [
                f"{model} image→text R@1 vs 10× chance ({_pct(10 * m['chance_R@1'])})",
                _pct(m["image_to_text_R@1"]),
                "≥ 10× chance",
                m["R@1_over_10x_chance"],
            ]
        )
    return (
        ["## Headroom (issue 14's bounds, as measured)", ""]
        + _table(["quantity", "measured (%)", "bound", "within"], rows)
        + [""]
    )


def _overlap(diagnostics, key):
    value = diagnostics.get("histogram_indicators", {}).get(key)
    return None if value is None else value["mean"]


def _models_table(summary):
    models = summary["models"]
    labelings = []
    for d in models.values():
        labelings += [f for f in d.get("zero_shot_acc1", {}) if f not in labelings]
    image_only = summary.get("image_only_fewshot", {})
    header = (
        ["model"]
        + [f"zero-shot {f}" for f in labelings]
        + [
            "i→t R@1",
            "t→i R@1",
            "modality gap",
            "alignment",
            "class overlap",
            "modality overlap",
            "proto (max shots, image only)",
            "LDA (max shots, image only)",
        ]
    )
    rows = []
    for model, d in models.items():
        zs, rk = d.get("zero_shot_acc1", {}), d.get("recall_at_k", {})
        shots = {m: by[max(by, key=int)]["acc1"] for m, by in image_only.get(model, {}).items()}
        rows.append(
            [model]
            + [_pct(zs.get(f)) for f in labelings]
            + [
                _pct(rk.get("image_to_text", {}).get("1")),
                _pct(rk.get("text_to_image", {}).get("1")),
                _num(d.get("modality_gap")),
                _num(d.get("alignment_score")),
                _num(_overlap(d, "class_overlap")),
                _num(_overlap(d, "modality_overlap")),
                _pct(shots.get("prototype")),
                _pct(shots.get("lda")),
            ]
        )
    return (
        [
            "## The model zoo",
            "",
            "Accuracies and recalls in %; the overlaps are the "
            "histogram indicators of seed 002 (Σ min of two normalised 50-bin histograms of "
            "cosines on the same pairs for every model: 1 = the same distribution).",
            "",
        ]
        + _table(header, rows)
        + [""]
    )
