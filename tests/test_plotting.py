import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

from skvlm.plotting import (  # noqa: E402
    plot_fewshot_curves,
    plot_retrieval_table,
    plot_similarity_histograms,
)


def _bar_heights(ax):
    return np.array([p.get_height() for p in ax.patches])


def test_similarity_histograms_one_density_histogram_per_key(tmp_path):
    d = {
        "intra_class": np.array([0.9, 0.8, 0.85, 0.95]),
        "inter_class": np.array([0.1, 0.2]),
        "inter_modal": np.array([0.3]),
    }
    ax = plot_similarity_histograms(
        d, keys=["intra_class", "inter_class"], bins=4, title="by class"
    )
    assert len(ax.patches) == 2 * 4  # 4 bars per histogram
    heights = _bar_heights(ax).reshape(2, 4)
    widths = np.array([p.get_width() for p in ax.patches]).reshape(2, 4)
    # density: each histogram integrates to 1
    np.testing.assert_allclose((heights * widths).sum(axis=1), [1.0, 1.0])
    # the two intra-class values fall in the top bin of the shared range [0.1, 0.95]
    assert heights[0, 0] == 0 and heights[1, -1] == 0
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["same class (image-image) (n=4)", "different class (image-image) (n=2)"]
    assert ax.get_title() == "by class"
    path = tmp_path / "hist.png"
    ax.figure.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_similarity_histograms_draws_into_given_axes_and_rejects_unknown_key():
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_similarity_histograms({"x": [0.1, 0.2]}, bins=3, ax=ax) is ax
    with pytest.raises(ValueError, match="'nope'"):
        plot_similarity_histograms({"x": [0.1]}, keys=["nope"])


def test_fewshot_curves_mean_and_std_over_seeds():
    runs = pd.DataFrame(
        {
            "method": ["A", "A", "A", "A", "B", "B"],
            "shots": [1, 1, 4, 4, 1, 4],
            "seed": [0, 1, 0, 1, 0, 0],
            "acc1": [0.2, 0.4, 0.6, 0.6, 0.5, 0.9],
        }
    )
    ax = plot_fewshot_curves(runs, title="shape")
    lines = ax.lines  # errorbar adds the data line first, then caps
    data_lines = [ln for ln in lines if ln.get_marker() == "o"]
    assert len(data_lines) == 2
    np.testing.assert_allclose(data_lines[0].get_xdata(), [1, 4])
    np.testing.assert_allclose(data_lines[0].get_ydata(), [0.3, 0.6])
    np.testing.assert_allclose(data_lines[1].get_ydata(), [0.5, 0.9])
    # error bar of A at 1 shot spans mean ± std (sample std of 0.2, 0.4)
    segments = ax.collections[0].get_segments()
    std = np.std([0.2, 0.4], ddof=1)
    np.testing.assert_allclose(segments[0][:, 1], [0.3 - std, 0.3 + std])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["A", "B"]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "4"]
    assert ax.get_ylabel() == "acc1"


def test_fewshot_curves_errors():
    with pytest.raises(ValueError, match="acc1"):
        plot_fewshot_curves(pd.DataFrame({"method": ["a"], "shots": [1]}))
    with pytest.raises(ValueError, match="empty"):
        plot_fewshot_curves(pd.DataFrame({"method": [], "shots": [], "acc1": []}))


def test_retrieval_table_annotates_every_finite_cell(tmp_path):
    table = pd.DataFrame(
        {"image→image": [0.2, 0.3, 0.4], "text→text": [0.5, np.nan, 0.6]},
        index=["raw", "OTI/OVI", "PCA←"],
    )
    ax = plot_retrieval_table(table, title="mAP")
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == ["20.0%", "30.0%", "40.0%", "50.0%", "60.0%"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["raw", "OTI/OVI", "PCA←"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["image→image", "text→text"]
    # the annotation of cell (row 2, col 1) sits at x=1, y=2
    cell = next(t for t in ax.texts if t.get_text() == "60.0%")
    assert cell.get_position() == (1, 2)
    path = tmp_path / "table.png"
    ax.figure.savefig(path)
    assert path.stat().st_size > 0


def test_retrieval_table_rejects_empty():
    with pytest.raises(ValueError, match="non-empty"):
        plot_retrieval_table(pd.DataFrame())


def test_missing_matplotlib_names_the_plot_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"skvlm\[plot\]"):
        plot_similarity_histograms({"x": [0.1]})


def test_fewshot_curves_bands_are_std_or_t_interval():
    from scipy import stats

    runs = pd.DataFrame(
        {
            "method": ["A"] * 4,
            "shots": [1, 1, 2, 2],
            "seed": [0, 1, 0, 1],
            "acc1": [0.2, 0.4, 0.6, 0.6],
        }
    )
    std = np.std([0.2, 0.4], ddof=1)
    for band, half in (("std", std), ("ci95", stats.t.ppf(0.975, 1) * std / np.sqrt(2))):
        ax = plot_fewshot_curves(runs, band=band)
        np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.3, 0.6])
        # the band's polygon spans mean ± half at 1 shot and has zero width at 2 shots
        ys = ax.collections[0].get_paths()[0].vertices[:, 1]
        np.testing.assert_allclose([ys.min(), ys.max()], [0.3 - half, max(0.3 + half, 0.6)])
    with pytest.raises(ValueError, match="band"):
        plot_fewshot_curves(runs, band="bogus")


def test_retrieval_bars_heights_and_interval_whiskers():
    from skvlm.plotting import plot_retrieval_bars

    table = pd.DataFrame(
        {
            "group": ["shape", "shape", "colour", "colour"],
            "series": ["raw", "OTI", "raw", "OTI"],
            "value": [0.2, 0.5, 0.3, 0.4],
            "low": [0.1, 0.4, 0.2, np.nan],
            "high": [0.25, 0.6, 0.5, np.nan],
        }
    )
    ax = plot_retrieval_bars(table, title="t")
    np.testing.assert_allclose(_bar_heights(ax), [0.2, 0.3, 0.5, 0.4])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["raw", "OTI"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["shape", "colour"]
    # the first series' whiskers span [low, high]
    from matplotlib.container import ErrorbarContainer

    whiskers = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    segments = whiskers[0].lines[2][0].get_segments()
    np.testing.assert_allclose(segments[0][:, 1], [0.1, 0.25])
    with pytest.raises(ValueError, match="value"):
        plot_retrieval_bars(pd.DataFrame({"group": ["a"], "series": ["b"]}))


def test_embedding_map_pca_and_tsne_draw_every_point(tmp_path):
    from skvlm.plotting import plot_embedding_map

    rng = np.random.default_rng(0)
    groups = {"image": rng.normal(size=(12, 4)), "text": rng.normal(size=(8, 4)) + 3}
    for method in ("pca", "tsne"):
        ax = plot_embedding_map(groups, method=method)
        assert [len(c.get_offsets()) for c in ax.collections] == [12, 8]
        ax.figure.savefig(tmp_path / f"{method}.png")
    with pytest.raises(ValueError, match="width"):
        plot_embedding_map({"a": np.ones((2, 3)), "b": np.ones((2, 4))})
    with pytest.raises(ValueError, match="method"):
        plot_embedding_map(groups, method="umap")
