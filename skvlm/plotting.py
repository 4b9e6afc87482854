"""Figures of the seed papers' studies (matplotlib, the optional ``plot`` extra).

Every function draws into a given ``matplotlib.axes.Axes`` or, when ``ax`` is None, into
a new ``matplotlib.figure.Figure`` made without ``pyplot`` (no global figure state, no
GUI backend needed), and returns the axes; save with ``ax.figure.savefig(path)``.
matplotlib is imported only when a function is called.
"""

import numpy as np

__all__ = ["plot_fewshot_curves", "plot_retrieval_table", "plot_similarity_histograms"]

_HISTOGRAM_LABELS = {
    "intra_class": "same class (image-image)",
    "inter_class": "different class (image-image)",
    "intra_modal": "image-image",
    "inter_modal": "image-text",
    "inter_modal_intra_class": "image-text, same class",
    "inter_modal_inter_class": "image-text, different class",
}


def _new_axes(ax, figsize):
    """``ax`` itself, or the axes of a fresh pyplot-free figure."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "skvlm.plotting needs matplotlib; install the plot extra: pip install 'skvlm[plot]'"
        ) from exc
    if ax is not None:
        return ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig.add_subplot()


def plot_similarity_histograms(distributions, keys=None, bins=50, ax=None, title=None):
    """Overlaid cosine-similarity histograms (seed 002, Fig. 2 and 5).

    Parameters
    ----------
    distributions : dict of str to array-like
        Samples of cosine similarity per kind of pair, as returned by
        :func:`skvlm.diagnostics.similarity_distributions`.
    keys : list of str, default=None
        Which entries to draw, in order; None draws all of them. Typical choices are
        ``["intra_class", "inter_class"]`` (by class) and
        ``["intra_modal", "inter_modal"]`` (by modality).
    bins : int, default=50
        Number of bins, shared by all histograms over their common range.
    ax : matplotlib.axes.Axes, default=None
        Where to draw; None creates a new figure.
    title : str, default=None
        Axes title.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The axes, with one histogram (density-normalised) and one legend entry per key.

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm.plotting import plot_similarity_histograms
    >>> d = {"intra_class": np.array([0.8, 0.9, 0.7]), "inter_class": np.array([0.1, 0.3])}
    >>> ax = plot_similarity_histograms(d, bins=5)
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['same class (image-image) (n=3)', 'different class (image-image) (n=2)']
    """
    keys = list(distributions) if keys is None else list(keys)
    missing = [k for k in keys if k not in distributions]
    if missing:
        raise ValueError(f"Unknown distribution key(s) {missing}; available: {sorted(distributions)}.")
    if not keys:
        raise ValueError("plot_similarity_histograms needs at least one distribution to draw.")
    ax = _new_axes(ax, (5.0, 3.5))
    arrays = [np.asarray(distributions[k], dtype=np.float64).ravel() for k in keys]
    nonempty = [a for a in arrays if a.size]
    lo = min((a.min() for a in nonempty), default=-1.0)
    hi = max((a.max() for a in nonempty), default=1.0)
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, bins + 1)
    for key, values in zip(keys, arrays):
        label = f"{_HISTOGRAM_LABELS.get(key, key)} (n={values.size})"
        ax.hist(values, bins=edges, density=values.size > 0, alpha=0.55, label=label)
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return ax


def plot_fewshot_curves(results, metric="acc1", ax=None, title=None):
    """Accuracy against shots, one line per method, error bars over seeds.

    Parameters
    ----------
    results : pandas.DataFrame
        One row per (method, shots, seed) run, with columns ``"method"``, ``"shots"``
        and ``metric``. Rows of the same method and shots are aggregated: the line
        is the mean, the error bar one standard deviation over seeds (0 for one seed).
    metric : str, default="acc1"
        The column to plot.
    ax : matplotlib.axes.Axes, default=None
        Where to draw; None creates a new figure.
    title : str, default=None
        Axes title.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The axes; shots on a log2 x axis, one legend entry per method in order of
        first appearance.

    Examples
    --------
    >>> import pandas as pd
    >>> from skvlm.plotting import plot_fewshot_curves
    >>> runs = pd.DataFrame({"method": ["proto"] * 4, "shots": [1, 1, 2, 2],
    ...                      "seed": [0, 1, 0, 1], "acc1": [0.5, 0.7, 0.8, 0.8]})
    >>> ax = plot_fewshot_curves(runs)
    >>> ax.lines[0].get_ydata().tolist()
    [0.6, 0.8]
    """
    missing = [c for c in ("method", "shots", metric) if c not in results.columns]
    if missing:
        raise ValueError(f"results lacks column(s) {missing}; it has {list(results.columns)}.")
    if len(results) == 0:
        raise ValueError("results is empty: there is nothing to plot.")
    ax = _new_axes(ax, (5.5, 3.8))
    for method in dict.fromkeys(results["method"]):
        rows = results[results["method"] == method]
        stats = rows.groupby("shots")[metric].agg(["mean", "std"]).sort_index()
        ax.errorbar(
            stats.index.to_numpy(),
            stats["mean"].to_numpy(),
            yerr=stats["std"].fillna(0.0).to_numpy(),
            marker="o",
            capsize=3,
            label=str(method),
        )
    shots = np.sort(results["shots"].unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(shots, [str(s) for s in shots])
    ax.set_xlabel("shots per class")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return ax


def plot_retrieval_table(table, ax=None, title=None, fmt="{:.1%}", cmap="viridis"):
    """A retrieval results table as a figure: shaded cells annotated with values.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows = methods (e.g. raw, OTI, PCA←), columns = tasks (e.g. image→image),
        values = a metric in [0, 1] such as mAP; NaN cells stay blank.
    ax : matplotlib.axes.Axes, default=None
        Where to draw; None creates a new figure sized to the table.
    title : str, default=None
        Axes title.
    fmt : str, default="{:.1%}"
        Format of the cell annotations.
    cmap : str, default="viridis"
        Colour map of the cells.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The axes: one text annotation per non-NaN cell; the method names are the y
        tick labels, the task names the x tick labels.

    Examples
    --------
    >>> import pandas as pd
    >>> from skvlm.plotting import plot_retrieval_table
    >>> table = pd.DataFrame({"image→image": [0.25, 0.5]}, index=["raw", "PCA←"])
    >>> ax = plot_retrieval_table(table)
    >>> sorted(t.get_text() for t in ax.texts)
    ['25.0%', '50.0%']
    """
    values = np.asarray(table.to_numpy(), dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"table must be a non-empty 2-D DataFrame, got shape {values.shape}.")
    n_rows, n_cols = values.shape
    ax = _new_axes(ax, (1.6 + 1.5 * n_cols, 0.9 + 0.45 * n_rows))
    finite = values[np.isfinite(values)]
    vmin, vmax = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    middle = (vmin + vmax) / 2
    for i in range(n_rows):
        for j in range(n_cols):
            if np.isfinite(values[i, j]):
                colour = "black" if values[i, j] > middle else "white"
                ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", color=colour)
    ax.set_xticks(range(n_cols), [str(c) for c in table.columns])
    ax.set_yticks(range(n_rows), [str(r) for r in table.index])
    ax.tick_params(length=0)
    if title:
        ax.set_title(title)
    return ax
