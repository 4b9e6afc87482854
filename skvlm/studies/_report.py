"""The report writers: ``report.md``, CSV tables, PNG figures and ``summary.json``.

They print the numbers of ``_findings`` and of the study tables; none computes one.
"""

import json
import math

import numpy as np

from ._common import logger, pandas
from ._methods import RETRIEVAL_METHODS


def _fmt(value, percent=True):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.1f}" if percent else f"{value:.3f}"


def _markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fewshot_markdown(summary):
    shots = sorted(summary["shots"].unique())
    header = ["method"] + [f"{k}-shot" for k in shots]
    rows = []
    for label in dict.fromkeys(summary["label"]):
        part = summary[summary["label"] == label].set_index("shots")
        rows.append(
            [label] + [_accuracy_cell(part.loc[k]) if k in part.index else "–" for k in shots]
        )
    return _markdown_table(header, rows)


def _accuracy_cell(r):
    """``62.3 ± 1.2 [59.4, 65.2]``: mean ± std over seeds [95 % interval], in %."""
    cell = f"{100 * r['acc1']:.1f} ± {100 * r['acc1_std']:.1f}"
    if "acc1_ci_low" in r and not math.isnan(r["acc1_ci_low"]):
        cell += f" [{100 * r['acc1_ci_low']:.1f}, {100 * r['acc1_ci_high']:.1f}]"
    return cell


def published_markdown(summary):
    """Measured beside published accuracy, for the rows a published number matches."""
    if "published" not in summary.columns:
        return None
    matched = summary[summary["published"].notna()]
    if matched.empty:
        return None
    rows = [
        [
            r.label,
            r.shots,
            _accuracy_cell(r._asdict()),
            _fmt(r.published),
            f"{100 * (r.acc1 - r.published):+.1f}",
            r.published_source,
        ]
        for r in matched.itertuples()
    ]
    return _markdown_table(
        ["method", "shots", "measured", "published", "difference", "source"], rows
    )


def _params_markdown(runs):
    """The hyper-parameters chosen per method (rows) and shots (columns).

    A cell shows the distinct values the seeds chose, separated by " / ".
    """
    if "params" not in runs.columns:
        return None
    shots = sorted(runs["shots"].unique())
    rows = []
    for label, part in runs.groupby("label", sort=False):
        cells = []
        for k in shots:
            chosen = [_params_text(p) for p in part[part["shots"] == k]["params"] if p]
            cells.append(" / ".join(dict.fromkeys(chosen)) if chosen else "–")
        if any(cell != "–" for cell in cells):
            rows.append([label] + cells)
    header = ["method"] + [f"{k}-shot" for k in shots]
    return _markdown_table(header, rows) if rows else None


def _tuning_markdown(tuning, labels):
    """Tuned / untuned accuracy per shots and the paired gain, one row per method."""
    methods = tuning["methods"]
    shots = sorted({int(k) for m in methods.values() for k in m["per_shots"]})
    rows = []
    for method, entry in methods.items():
        cells = [
            f"{_fmt(c['tuned'])} / {_fmt(c['untuned'])}" if c else "–"
            for c in (entry["per_shots"].get(str(k)) for k in shots)
        ]
        rows.append([labels.get(method, method)] + cells + [_signed(entry["gain"], "acc1")])
    header = ["method"] + [f"{k}-shot" for k in shots] + ["gain (pts)"]
    return _markdown_table(header, rows)


def _params_text(params):
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in params.items()
    )


def _retrieval_markdown(results):
    header = ["task", "method", "mAP [95 % interval]", "mAP@R", "R-precision", "queries", "gallery"]
    rows = [
        [
            r.task,
            r.label,
            f"{_fmt(r.mAP)} [{_fmt(r.mAP_ci_low)}, {_fmt(r.mAP_ci_high)}]",
            _fmt(r.mAP_at_R),
            _fmt(r.R_precision),
            r.n_queries,
            r.n_gallery,
        ]
        for r in results.itertuples()
    ]
    return _markdown_table(header, rows)


def _save_figure(ax, path):
    fig = ax.figure
    fig.savefig(path, dpi=110)
    return path.name


def _plot_available():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def _finding_line(finding):
    numbers = [
        _number_text(name, value)
        for name, value in finding.items()
        if name not in ("claim", "verdict", "expected_sign", "gains")
    ]
    return [finding["claim"], "; ".join(numbers), f"**{finding['verdict']}**"]


def _number_text(name, value, unit=None):
    """``name value`` of a finding's entry; nested dicts in parentheses, unit from the top."""
    unit = unit or name
    if isinstance(value, dict) and not _is_gain(value):
        parts = [_number_text(k, v, unit) for k, v in value.items()]
        return f"{name} ({', '.join(parts)})"
    return f"{name}: {_signed(value, unit)}"


def _is_gain(value):
    return isinstance(value, dict) and set(value) == {"mean", "ci95"}


def _signed(value, name):
    """A number of a finding: a gain (signed) with its interval, a value, or an error."""
    if value is None:
        return "–"
    if "error" in name:
        return f"{value:.1e}"
    is_gain = _is_gain(value)
    mean, interval = (value["mean"], value["ci95"]) if is_gain else (value, None)
    if not isinstance(mean, (int, float, np.floating)):
        return str(mean)
    percent = any(k in name for k in ("acc1", "mAP", "R1", "R@1"))
    sign = "+" if is_gain and not name.endswith("overlap") else ""
    if percent:
        text = f"{100 * mean:{sign}.1f}" + (" pts" if is_gain else " %")
        if interval is not None:
            text += f" [{100 * interval[0]:{sign}.1f}, {100 * interval[1]:{sign}.1f}]"
        return text
    text = f"{mean:{sign}.3f}"
    if interval is not None:
        text += f" [{interval[0]:{sign}.3f}, {interval[1]:{sign}.3f}]"
    return text


def write_json(path, data):
    path.write_text(json.dumps(_jsonable(data), indent=2, ensure_ascii=False) + "\n")


def _two_histograms(distributions, model, path):
    from matplotlib.figure import Figure

    from ..plotting import plot_similarity_histograms

    fig = Figure(figsize=(10, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot_similarity_histograms(
        distributions,
        keys=["intra_class", "inter_class"],
        ax=left,
        title=f"{model}: image-image by shape class",
    )
    if "inter_modal" in distributions:
        plot_similarity_histograms(
            distributions,
            keys=["intra_modal", "inter_modal"],
            ax=right,
            title=f"{model}: by modality",
        )
    else:
        right.text(
            0.5,
            0.5,
            "image-only model:\nno image-text pairs",
            ha="center",
            va="center",
            transform=right.transAxes,
        )
        right.set_axis_off()
    fig.savefig(path, dpi=110)
    return path.name


def _fewshot_figures(out, fewshot_runs):
    from ..plotting import plot_fewshot_curves

    names = {}
    for labeling in dict.fromkeys(fewshot_runs["labeling"]):
        runs = fewshot_runs[fewshot_runs["labeling"] == labeling]
        runs = runs.assign(method=runs["label"])
        ax = plot_fewshot_curves(runs, title=f"few-shot accuracy, labels = {labeling}", band="ci95")
        names[labeling] = _save_figure(ax, out / f"fewshot_{labeling}.png")
    return names


def _retrieval_figure(out, retrieval):
    from ..plotting import plot_retrieval_bars

    table = retrieval.assign(
        group=retrieval["labeling"] + ":\n" + retrieval["task"],
        series=retrieval["method"].map(RETRIEVAL_METHODS),
        value=retrieval["mAP"],
        low=retrieval["mAP_ci_low"],
        high=retrieval["mAP_ci_high"],
    )
    ax = plot_retrieval_bars(table, title="retrieval mAP [95 % interval over queries]")
    return _save_figure(ax, out / "retrieval_map.png")


def _write_tables(out, fewshot_runs, fewshot_summary, retrieval, diagnostics):
    pd = pandas()

    written = []
    if fewshot_runs is not None:
        runs = fewshot_runs
        if "params" in runs.columns:  # one JSON object per row
            runs = runs.assign(params=runs["params"].map(lambda p: json.dumps(_jsonable(p))))
        runs.to_csv(out / "fewshot_runs.csv", index=False)
        fewshot_summary.to_csv(out / "fewshot_summary.csv", index=False)
        written += ["fewshot_runs.csv", "fewshot_summary.csv"]
    if retrieval is not None:
        retrieval.drop(columns=["ap_per_query"], errors="ignore").to_csv(
            out / "retrieval.csv", index=False
        )
        written.append("retrieval.csv")
    if diagnostics:
        rows = []
        for model, diag in diagnostics.items():
            row = {"model": model}
            for key, value in diag.items():
                if isinstance(value, dict):
                    for sub, v in value.items():
                        if isinstance(v, dict):
                            row.update({f"{key}.{sub}.{k}": x for k, x in v.items()})
                        else:
                            row[f"{key}.{sub}"] = v
                elif not isinstance(value, list):
                    row[key] = value
            rows.append(row)
        pd.DataFrame(rows).to_csv(out / "models.csv", index=False)
        written.append("models.csv")
    return written


def _report_markdown(summary, fewshot_runs, fewshot_summary, retrieval, diagnostics, figures):
    lines = [
        f"# {summary['title']}",
        "",
        summary["description"],
        "",
        (
            f"Measured in {summary['elapsed_s']:.0f} s"
            + (
                f" ({summary['cpu_s']:.0f} s of CPU time in this process; the figures "
                "after that are in summary.json's total_elapsed_s / total_cpu_s)"
                if summary.get("cpu_s") is not None
                else ""
            )
            + ". All numbers are measured by this run; every value is also in "
            "`summary.json`." + (f" {summary['scaling']}" if summary.get("scaling") else "")
        ),
        "",
        "Configuration: " + ", ".join(f"{k} = `{v}`" for k, v in summary["config"].items()),
        "",
    ]
    if summary.get("findings"):
        lines += _findings_section(summary)
    if summary.get("headroom"):
        from ._report_zoo import zoo_sections

        lines += zoo_sections(summary, figures.get("zoo", {}))
    if diagnostics:
        lines += _models_section(diagnostics)
    if fewshot_summary is not None:
        lines += _fewshot_section(summary, fewshot_summary, fewshot_runs, figures)
    if retrieval is not None:
        lines += _retrieval_section(retrieval, figures)
    if diagnostics:
        lines += _similarity_section(diagnostics, figures)
    if summary.get("notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in summary["notes"]] + [""]
    if summary.get("skipped") or summary.get("unavailable"):
        lines += ["## Not run", ""]
        for what, why in {**summary.get("unavailable", {}), **summary.get("skipped", {})}.items():
            lines.append(f"- {what}: {why}")
        lines.append("")
    lines += ["## Files", ""] + [f"- `{name}`" for name in summary["files"]] + [""]
    return "\n".join(lines)


def _findings_section(summary):
    rows = [_finding_line(f) for f in summary["findings"].values()]
    return [
        "## Findings (as measured)",
        "",
        _markdown_table(["claim", "measured", "verdict"], rows),
        "",
        "Gains are differences of percentages (pts) with their 95 % interval in "
        "brackets, paired: few-shot accuracy gains are averaged over shot counts per seed "
        "(same splits for both methods; Student-t interval over seeds), retrieval mAP "
        "gains use the same queries (bootstrap over queries), model gains the same "
        "image-caption pairs (bootstrap over pairs). A verdict is 'holds' / 'does not "
        "hold' only when every interval it rests on excludes zero on the claimed / the "
        "opposite side, 'no clear difference' when every interval straddles zero, "
        "'mixed' otherwise." + summary.get("caveat", ""),
        "",
    ]


def _models_section(diagnostics):
    header = [
        "model",
        "zero-shot shape",
        "colour",
        "background",
        "i→t R@1",
        "t→i R@1",
        "modality gap",
        "alignment score",
    ]
    rows = []
    for model, d in diagnostics.items():
        zs = d.get("zero_shot_acc1", {})
        rk = d.get("recall_at_k", {})
        rows.append(
            [
                model,
                _fmt(zs.get("shape")),
                _fmt(zs.get("colour")),
                _fmt(zs.get("background")),
                _fmt(rk.get("image_to_text", {}).get("1")),
                _fmt(rk.get("text_to_image", {}).get("1")),
                _fmt(d["modality_gap"], percent=False),
                _fmt(d["alignment_score"], percent=False),
            ]
        )
    lines = ["## Models", "", _markdown_table(header, rows), ""]
    chance = next(iter(diagnostics.values())).get("chance_recall_at_1")
    if chance:
        lines += [
            (
                f"Accuracies and recalls in %. Chance recall@1 is {100 * chance:.2f}%. "
                "Modality gap: distance between the L2-normalised image and caption "
                "centroids; alignment score: mean cosine of matched image-caption pairs."
            ),
            "",
        ]
    for model, d in diagnostics.items():
        lines += [f"- note ({model}): {note}" for note in d.get("notes", [])]
    return lines + [""]


def _fewshot_section(summary, fewshot_summary, fewshot_runs, figures):
    lines = [
        "## Few-shot classification",
        "",
        "Top-1 accuracy (%) on the test rows, mean ± std over seeds [95 % interval]. "
        + summary.get("protocol", ""),
        "",
    ]
    for labeling in dict.fromkeys(fewshot_summary["labeling"]):
        part = fewshot_summary[fewshot_summary["labeling"] == labeling]
        lines += [f"### Labels = {labeling}", "", _fewshot_markdown(part), ""]
        if labeling in figures.get("fewshot", {}):
            lines += [f"![few-shot {labeling}]({figures['fewshot'][labeling]})", ""]
        published = published_markdown(part)
        if published:
            lines += [
                "Beside the published numbers (same model, dataset, shots and method):",
                "",
                published,
                "",
            ]
        tuning = summary.get("tuning")
        if tuning and tuning["labeling"] == labeling:
            lines += [
                "Tuned against untuned (each method's defaults) on the same support and "
                "test rows: mean accuracy (%) tuned / untuned per shot count, and the "
                "tuned-minus-untuned gain averaged over shots, paired per seed [95 % "
                "interval over seeds]:",
                "",
                _tuning_markdown(tuning, dict(zip(part["method"], part["label"]))),
                "",
            ]
        runs = fewshot_runs[fewshot_runs["labeling"] == labeling]
        params = _params_markdown(runs)
        if params:
            lines += [
                "Hyper-parameters chosen on the validation shots (the distinct values "
                "over seeds; the defaults when untuned):",
                "",
                params,
                "",
            ]
    return lines


def _retrieval_section(retrieval, figures):
    lines = [
        "## Retrieval",
        "",
        (
            "mAP, MAP@R and R-precision (%) of held-out queries against the rest "
            "(relevant = same label). OTI/OVI invert the queries only (⟨T, I⟩ / ⟨I, T⟩); "
            "PCA← projects queries and gallery."
        ),
        "",
    ]
    for labeling in dict.fromkeys(retrieval["labeling"]):
        part = retrieval[retrieval["labeling"] == labeling]
        lines += [f"### Labels = {labeling}", "", _retrieval_markdown(part), ""]
    if figures.get("retrieval"):
        lines += [f"![retrieval mAP]({figures['retrieval']})", ""]
    return lines


def _similarity_section(diagnostics, figures):
    header = [
        "model",
        "same class",
        "different class",
        "image-image",
        "image-text",
        "S_intra recovery max error",
    ]
    rows = []
    for model, d in diagnostics.items():
        err = d.get("recovery_max_abs_error")
        rows.append(
            [model]
            + [
                _fmt(d.get(f"mean_cos_{k}"), percent=False)
                for k in ("intra_class", "inter_class", "intra_modal", "inter_modal")
            ]
            + ["not run" if err is None else f"{err:.1e} ({d['recovery_n_images']} images)"]
        )
    lines = [
        "## Similarity diagnostics",
        "",
        "Mean cosine similarity of each kind of pair (seed 002, Fig. 2).",
        "",
        _markdown_table(header, rows),
        "",
    ]
    for model, name in figures.get("histograms", {}).items():
        lines += [f"![similarities {model}]({name})", ""]
    return lines


def write_report(
    out, summary, fewshot_runs, fewshot_summary, retrieval, diagnostics, distributions, extras=None
):
    """Write CSVs, PNGs, report.md and summary.json into ``out``.

    ``extras``: the demo's model-zoo measurements (``_report_zoo``), or None.
    """
    logger.info(f"writing the report to {out}")
    files = _write_tables(out, fewshot_runs, fewshot_summary, retrieval, diagnostics)
    figures = {}
    if _plot_available():
        if fewshot_runs is not None and len(fewshot_runs):
            figures["fewshot"] = _fewshot_figures(out, fewshot_runs)
        if retrieval is not None and len(retrieval):
            figures["retrieval"] = _retrieval_figure(out, retrieval)
        figures["histograms"] = {
            model: _two_histograms(dist, model, out / f"similarity_{model}.png")
            for model, dist in (distributions or {}).items()
        }
        files += list(figures.get("fewshot", {}).values())
        files += [figures["retrieval"]] if "retrieval" in figures else []
        files += list(figures["histograms"].values())
        if extras is not None:
            from ._report_zoo import zoo_figures

            figures["zoo"] = zoo_figures(out, extras)
            files += list(figures["zoo"].values())
    else:
        summary.setdefault("skipped", {})["figures"] = (
            "matplotlib is not installed (pip install 'skvlm[plot]')"
        )
    summary["files"] = ["report.md", "summary.json"] + files
    (out / "report.md").write_text(
        _report_markdown(summary, fewshot_runs, fewshot_summary, retrieval, diagnostics, figures)
    )
    write_json(out / "summary.json", summary)
