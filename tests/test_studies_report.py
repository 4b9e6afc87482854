"""What the study reports print: published numbers beside measured ones, CoOp splits."""

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from skvlm.__main__ import _print_published, main
from skvlm.studies import published_results
from skvlm.studies._folder import _with_published
from skvlm.studies._report import published_markdown


def test_published_results_is_reexported_with_its_columns():
    table = published_results()
    assert {"method", "model", "dataset", "shots", "acc1", "source"} <= set(table.columns)
    rn50 = table[(table.model == "RN50") & (table.method == "tip_adapter") & (table.shots == 16)]
    assert round(float(100 * rn50.acc1.mean()), 2) == 70.32  # the reference's 11-dataset mean


def test_published_column_and_difference_beside_the_measured_numbers(capsys):
    summary = pd.DataFrame(
        {
            "labeling": ["classes"] * 2,
            "method": ["tip_adapter", "prototype"],
            "label": ["Tip-Adapter", "NearestPrototype"],
            "shots": [16, 16],
            "acc1": [0.88, 0.8],
            "acc1_std": [0.01, 0.01],
            "acc1_ci_low": [0.86, 0.78],
            "acc1_ci_high": [0.9, 0.82],
        }
    )
    encoder = SimpleNamespace(model="RN50", pretrained="default")
    compared = _with_published(summary, "OxfordPets", encoder)
    row = compared.set_index("method").loc["tip_adapter"]
    assert row["published"] == pytest.approx(0.8814)
    assert row["difference"] == pytest.approx(0.88 - 0.8814)
    assert np.isnan(compared.set_index("method").loc["prototype", "published"])
    table = published_markdown(compared)
    assert "| Tip-Adapter | 16 | 88.0 ± 1.0 [86.0, 90.0] | 88.1 | -0.1 |" in table
    assert "NearestPrototype" not in table  # nothing published to compare with
    _print_published(
        {"fewshot": {"classes": {"tip_adapter": {"16": {"acc1": 0.88, "published": 0.8814}}}}}
    )
    out = capsys.readouterr().out
    assert "measured  88.0  published  88.1  difference  -0.1" in out


def _coop_eurosat(root, n_train=8, n_val=3, n_test=4):
    """A CoOp EuroSAT folder of generated scenes, labelled by background."""
    from PIL import Image

    from skvlm.datasets import make_scenes

    folder = root / "eurosat" / "2750"
    split = {"train": [], "val": [], "test": []}
    counts = {"train": n_train, "val": n_val, "test": n_test}
    scenes = make_scenes(400, random_state=5)
    names = sorted(set(scenes.factors["background"]))[:3]
    taken = {(s, name): 0 for s in split for name in names}
    for i, (image, name) in enumerate(zip(scenes.images, scenes.factors["background"])):
        if name not in names:
            continue
        subset = next((s for s in split if taken[(s, name)] < counts[s]), None)
        if subset is None:
            continue
        taken[(subset, name)] += 1
        (folder / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / name / f"{i}.png")
        split[subset].append([f"{name}/{i}.png", names.index(name), name])
    (root / "eurosat" / "split_zhou_EuroSAT.json").write_text(json.dumps(split))
    return names


def test_fewshot_command_on_a_coop_split(tmp_path):
    _coop_eurosat(tmp_path / "data")
    out = tmp_path / "report"
    status = main(
        [
            "fewshot",
            "--data",
            str(tmp_path / "data"),
            "--coop",
            "eurosat",
            "--model",
            "skvlm-tiny",
            "--device",
            "cpu",
            "--methods",
            "prototype,lda",
            "--shots",
            "1,2",
            "--seeds",
            "0,1",
            "--selection",
            "paired",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert status == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["coop_dataset"] == "EuroSAT"
    assert summary["config"]["selection"] == "paired"
    runs = pd.read_csv(out / "fewshot_runs.csv")
    assert (runs["n_test"] == 3 * 4).all()  # the whole test split, every run
    assert runs.set_index("shots")["n_val"].groupby(level=0).first().to_dict() == {1: 3, 2: 6}
    report = (out / "report.md").read_text()
    assert "validation shots per class from the val split" in report
    assert "by more than a standard error widened for the grid's size" in report
    assert "scored on the test split" in report


def test_fewshot_command_with_augmented_views(tmp_path):
    from PIL import Image

    from skvlm.datasets import make_scenes

    scenes = make_scenes(40, random_state=6)
    root = tmp_path / "data"
    for i, (image, label) in enumerate(zip(scenes.images, scenes.factors["background"])):
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / label / f"{i}.png")
    out = tmp_path / "report"
    status = main(
        [
            "fewshot",
            "--data",
            str(root),
            "--model",
            "skvlm-tiny",
            "--device",
            "cpu",
            "--methods",
            "lda,lda_views",
            "--views",
            "3",
            "--shots",
            "1",
            "--seeds",
            "0",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert status == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["n_views"] == 3
    assert set(summary["fewshot"]["classes"]) == {"lda", "lda_views"}
    # GDA on one row per shot collapses (a note); on 3 views per shot it has a covariance
    notes = " ".join(summary["notes"])
    assert "LDA: " in notes and "LDA (augmented views): " not in notes


def test_imagenet_validation_shots_come_from_train_and_the_report_says_so():
    from skvlm.studies._folder import _protocol

    setting = {"tune": True, "search": "default"}
    imagenet = {"dataset": "ImageNet", "test_images": np.zeros((1, 2))}  # no val_images
    sentence = _protocol(imagenet, setting)
    assert "from the train split (CoOp's ImageNet val is its test set)" in sentence
    assert "scored on the test split" in sentence
    dtd = {"dataset": "DTD", "test_images": np.zeros((1, 2)), "val_images": np.zeros((1, 2))}
    assert "from the val split" in _protocol(dtd, setting)
    assert "default hyper-parameters" in _protocol(dtd, {"tune": False, "search": "default"})


def test_progress_lines_go_to_stderr_once_with_verbose(capsys):
    import logging

    from skvlm.studies import run_fewshot_study

    root = logging.getLogger()
    extra = logging.StreamHandler()  # as open_clip's logging.info() installs one
    root.addHandler(extra)
    try:
        rng = np.random.default_rng(0)
        y = np.repeat([0, 1], 6)
        X = np.eye(3)[y] + rng.normal(scale=0.1, size=(12, 3))
        run_fewshot_study(X, y, methods=["prototype"], shots=[1], seeds=[0], verbose=1)
        err = capsys.readouterr().err
        run_fewshot_study(X, y, methods=["prototype"], shots=[1], seeds=[0], verbose=0)
        quiet = capsys.readouterr().err
    finally:
        root.removeHandler(extra)
    lines = [line for line in err.splitlines() if "few-shot: 1 shot(s)" in line]
    assert len(lines) == 1 and lines[0].startswith("[") and " s] " in lines[0]
    assert "few-shot" not in quiet


def test_chosen_parameters_table_shows_the_distinct_choices_per_shots():
    from skvlm.studies._report import _params_markdown

    runs = pd.DataFrame(
        {
            "label": ["Tip-Adapter"] * 3 + ["NearestPrototype"],
            "shots": [1, 1, 2, 1],
            "params": [
                {"beta": 1.0, "alpha": 0.5},
                {"beta": 2.0, "alpha": 0.5},
                {"beta": 1.0, "alpha": 0.5},
                {},
            ],
        }
    )
    table = _params_markdown(runs).splitlines()
    assert table[0] == "| method | 1-shot | 2-shot |"
    assert table[2] == "| Tip-Adapter | beta=1, alpha=0.5 / beta=2, alpha=0.5 | beta=1, alpha=0.5 |"
    assert len(table) == 3  # nothing tuned for NearestPrototype: no row


def test_tuned_against_untuned_table_prints_the_summary_numbers():
    from skvlm.studies._report import _tuning_markdown

    tuning = {
        "labeling": "shape",
        "methods": {
            "lda": {
                "gain": {"mean": 0.025, "ci95": [-0.01, 0.06]},
                "per_shots": {
                    "1": {"tuned": 0.5, "untuned": 0.45},
                    "2": {"tuned": 0.6, "untuned": 0.6},
                },
            }
        },
    }
    table = _tuning_markdown(tuning, {"lda": "LDA"}).splitlines()
    assert table[0] == "| method | 1-shot | 2-shot | gain (pts) |"
    assert table[2] == "| LDA | 50.0 / 45.0 | 60.0 / 60.0 | +2.5 pts [-1.0, +6.0] |"


def test_retrieval_published_beside_matches_model_dataset_task_and_method():
    from skvlm.studies._retrieval_benchmark import published_beside, published_dataset_name

    row = {
        "model": "ViT-B-32",
        "pretrained": "default",
        "dataset": "/data/dtd/",
        "task": "image_to_image",
        "method": "raw",
        "metric": "mAP",
        "value": 0.30,
        "n_queries": 200,
        "n_gallery": 1000,
    }
    others = [
        {**row, "metric": "R_precision"},  # not a published metric
        {**row, "pretrained": "None"},  # random weights
        {**row, "dataset": "/data/my_photos"},  # no such published dataset
    ]
    (match,) = published_beside([row] + others)
    # seed 002, Table 3: ViT-B/32 (openai) raw image->image mAP on DTD is 28.3
    assert match["published_as"] == "DTD" and match["published"] == pytest.approx(0.283)
    assert match["difference"] == pytest.approx(0.30 - 0.283)
    assert "seed" in match["source"].lower() or "herzog" in match["source"].lower()
    assert published_dataset_name("/data/oxford_pets/") == "oxford_pets"
    assert published_dataset_name("caps/Flickr30k.csv") == "Flickr30k"
    assert published_beside([{**row, "task": "zeroshot_retrieval"}]) == []


def test_retrieval_command_prints_the_published_column(tmp_path, monkeypatch, capsys):
    from PIL import Image

    import skvlm._published as published
    from skvlm.datasets import make_scenes

    scenes = make_scenes(24, random_state=5)
    shapes = scenes.factors["shape"].astype(str)
    common = shapes.value_counts().index[:2]  # two classes with several images each
    for i, (image, shape) in enumerate(zip(scenes.images, shapes)):
        if shape not in common:
            continue
        (tmp_path / "shapes" / str(shape)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(tmp_path / "shapes" / str(shape) / f"{i}.png")
    real = published.published_results()
    extra = real.iloc[:1].assign(
        method="raw", model="skvlm-tiny", pretrained="", dataset="Shapes", shots=0
    )
    extra = extra.assign(task="image", metric="mAP", value=0.5, acc1=np.nan, source="test row")
    monkeypatch.setattr(published, "published_results", lambda: pd.concat([real, extra]))
    out = tmp_path / "report"
    args = ["retrieval", "--data", str(tmp_path / "shapes"), "--model", "skvlm-tiny"]
    main(args + ["--methods", "raw", "--n-queries", "4", "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    (match,) = summary["published"]
    measured = summary["retrieval"]["classes"]["image_to_image"]["raw"]["mAP"]
    assert match["mAP"] == pytest.approx(measured) and match["published"] == 0.5
    assert "published  50.0" in printed and f"measured {100 * measured:5.1f}" in printed
    assert "(test row)" in printed
