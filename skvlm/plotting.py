"""Figures of the seed papers' studies (matplotlib, the optional ``plot`` extra).

Every function draws into a given ``matplotlib.axes.Axes`` or, when ``ax`` is None, into
a new ``matplotlib.figure.Figure`` made without ``pyplot`` (no global figure state, no
GUI backend needed), and returns the axes; save with ``ax.figure.savefig(path)``.
matplotlib is imported only when a function is called.
"""

import numpy as np

__all__ = [
    "plot_embedding_map",
    "plot_fewshot_curves",
    "plot_retrieval_bars",
    "plot_retrieval_table",
    "plot_similarity_histograms",
]

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
        raise ValueError(
            f"Unknown distribution key(s) {missing}; available: {sorted(distributions)}."
        )
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


def plot_fewshot_curves(results, metric="acc1", ax=None, title=None, band=None):
    """Accuracy against shots, one line per method, error bars or bands over seeds.

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
    band : {None, "std", "ci95"}, default=None
        None draws error bars of one standard deviation; ``"std"`` a shaded band of
        mean ± one standard deviation; ``"ci95"`` a shaded band of the Student-t 95 %
        interval of the mean over seeds (``mean ± t(0.975, n-1) s / sqrt(n)``, no band
        with one seed).

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
    if band not in (None, "std", "ci95"):
        raise ValueError(f"band must be None, 'std' or 'ci95', got {band!r}.")
    ax = _new_axes(ax, (5.5, 3.8))
    for method in dict.fromkeys(results["method"]):
        rows = results[results["method"] == method]
        stats = rows.groupby("shots")[metric].agg(["mean", "std", "count"]).sort_index()
        x, mean = stats.index.to_numpy(), stats["mean"].to_numpy()
        half = stats["std"].fillna(0.0).to_numpy()
        if band is None:
            ax.errorbar(x, mean, yerr=half, marker="o", capsize=3, label=str(method))
            continue
        if band == "ci95":
            half = _t_half_width(half, stats["count"].to_numpy())
        (line,) = ax.plot(x, mean, marker="o", label=str(method))
        ax.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.2, linewidth=0)
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


def _t_half_width(std, count):
    """Half-widths of Student-t 95 % intervals of means (0 where one value)."""
    from scipy import stats

    count = np.asarray(count, dtype=np.float64)
    quantile = stats.t.ppf(0.975, np.maximum(count - 1, 1))
    return np.where(count > 1, quantile * std / np.sqrt(np.maximum(count, 1)), 0.0)


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


def plot_retrieval_bars(table, ax=None, title=None, ylabel="mAP"):
    """Grouped bars with their 95 % intervals (retrieval mAP per method and task).

    Parameters
    ----------
    table : pandas.DataFrame
        One row per bar, with columns ``group`` (the x position, e.g. a task or a
        model), ``series`` (the bar within a group, e.g. raw / OTI / PCA←, one
        colour and legend entry each), ``value`` and, optionally, ``low`` and
        ``high``: the interval drawn as an error bar (NaN: none).
    ax : matplotlib.axes.Axes, default=None
        Where to draw; None creates a new figure sized to the table.
    title : str, default=None
        Axes title.
    ylabel : str, default="mAP"

    Returns
    -------
    ax : matplotlib.axes.Axes
        The axes: one bar per row, in groups of the ``group`` values (in order of
        first appearance), one legend entry per ``series``.

    Examples
    --------
    >>> import pandas as pd
    >>> from skvlm.plotting import plot_retrieval_bars
    >>> table = pd.DataFrame({"group": ["shape", "shape"], "series": ["raw", "OTI"],
    ...                       "value": [0.25, 0.5], "low": [0.2, 0.4], "high": [0.3, 0.6]})
    >>> ax = plot_retrieval_bars(table)
    >>> [float(p.get_height()) for p in ax.patches]
    [0.25, 0.5]
    """
    missing = [c for c in ("group", "series", "value") if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; it has {list(table.columns)}.")
    if len(table) == 0:
        raise ValueError("table is empty: there is nothing to plot.")
    groups = list(dict.fromkeys(table["group"]))
    series = list(dict.fromkeys(table["series"]))
    width = 0.8 / len(series)
    ax = _new_axes(ax, (1.5 + 0.45 * len(groups) * len(series), 3.6))
    for j, name in enumerate(series):
        rows = table[table["series"] == name]
        x = np.array([groups.index(g) for g in rows["group"]]) + (j - (len(series) - 1) / 2) * width
        value = rows["value"].to_numpy(dtype=np.float64)
        yerr = None
        if {"low", "high"} <= set(rows.columns):
            low = rows["low"].to_numpy(dtype=np.float64)
            high = rows["high"].to_numpy(dtype=np.float64)
            yerr = np.nan_to_num(np.vstack([value - low, high - value]), nan=0.0)
        ax.bar(x, value, width=width, label=str(name), yerr=yerr, capsize=2)
    ax.set_xticks(range(len(groups)), [str(g) for g in groups])
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return ax


def plot_embedding_map(groups, method="pca", ax=None, title=None, random_state=0):
    """A 2-D map of several sets of embeddings, jointly reduced (seed 002, Fig. 7).

    Parameters
    ----------
    groups : dict of str to array-like of shape (n_i, d)
        The sets to draw (e.g. ``"image"``, ``"text"``, ``"image, PCA←"``), one colour
        each; all are reduced together, so their positions are comparable.
    method : {"pca", "tsne"}, default="pca"
        scikit-learn's ``PCA`` (the two leading directions) or ``TSNE`` (perplexity
        min(30, (n - 1) / 3), PCA initialisation).
    ax : matplotlib.axes.Axes, default=None
        Where to draw; None creates a new figure.
    title : str, default=None
        Axes title.
    random_state : int, default=0
        Seeds t-SNE.

    Returns
    -------
    ax : matplotlib.axes.Axes
        One scatter (``ax.collections``) and one legend entry per group, in order.

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm.plotting import plot_embedding_map
    >>> rng = np.random.default_rng(0)
    >>> ax = plot_embedding_map({"a": rng.normal(size=(5, 3)), "b": rng.normal(size=(4, 3))})
    >>> [len(c.get_offsets()) for c in ax.collections]
    [5, 4]
    """
    if method not in ("pca", "tsne"):
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}.")
    arrays = [np.asarray(v, dtype=np.float64) for v in groups.values()]
    if not arrays or any(a.ndim != 2 or len(a) == 0 for a in arrays):
        raise ValueError("groups must map names to non-empty 2-D arrays.")
    if len({a.shape[1] for a in arrays}) != 1:
        raise ValueError(f"every group needs the same width, got {[a.shape[1] for a in arrays]}.")
    ax = _new_axes(ax, (4.6, 4.0))
    stacked = np.vstack(arrays)
    if method == "pca":
        from sklearn.decomposition import PCA

        points = PCA(n_components=2).fit_transform(stacked)
    else:
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(1.0, (len(stacked) - 1) / 3)))
        points = TSNE(
            n_components=2, perplexity=perplexity, init="pca", random_state=random_state
        ).fit_transform(stacked)
    start = 0
    for name, a in zip(groups, arrays):
        part = points[start : start + len(a)]
        start += len(a)
        ax.scatter(part[:, 0], part[:, 1], s=6, alpha=0.6, label=f"{name} (n={len(a)})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"{'PCA' if method == 'pca' else 't-SNE'} 1")
    ax.set_ylabel(f"{'PCA' if method == 'pca' else 't-SNE'} 2")
    ax.legend(fontsize="small", markerscale=2, loc="upper right")
    if title:
        ax.set_title(title)
    return ax
