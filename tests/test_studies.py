import json
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from skvlm.__main__ import main
from skvlm.studies import (
    diagnose_embeddings,
    run_fewshot_study,
    run_retrieval_study,
    summarize_fewshot,
)
from skvlm.studies._demo import _mentions

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _unit_rows(rng, n, d):
    X = rng.normal(size=(n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _signal_plus_noise(rng, n_per_class=12, noise=3.0):
    """Class signal on axis 0 only (+1 / -1), large noise on axes 1..3."""
    y = np.repeat(["a", "b"], n_per_class)
    X = np.zeros((2 * n_per_class, 4))
    X[:, 0] = np.where(y == "a", 1.0, -1.0)
    X[:, 1:] = rng.normal(scale=noise, size=(2 * n_per_class, 3))
    return X, y


# --------------------------------------------------------------------------- the demo (end to end)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "report"
    proc = subprocess.run(
        # one torch thread: on a machine whose cores are busy, two threads of tiny ops
        # spend most of their time waiting for each other
        [
            sys.executable,
            "-m",
            "skvlm",
            "demo",
            "--quick",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--threads",
            "1",
        ],
        check=False,
        capture_output=True,
        text=True,
        # a guard against a hang, not a timing test: with the five zoo models the quick
        # demo needs ~35 CPU-s, but on the shared 2-core machine it has taken 750 s
        timeout=1800,
    )
    return out, proc


def test_demo_quick_writes_report_figures_and_summary(quick_demo):
    out, proc = quick_demo
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    report = (out / "report.md").read_text()
    for section in (
        "## Findings (as measured)",
        "## Models",
        "## Few-shot classification",
        "### Labels = shape",
        "### Labels = background",
        "## Retrieval",
        "## Similarity diagnostics",
    ):
        assert section in report
    # every figure the report shows inline exists and is a PNG
    images = [
        line.split("](")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")
    ]
    assert "fewshot_shape.png" in images and "retrieval_map.png" in images
    assert any(name.startswith("similarity_") for name in images)
    for name in images:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC


def test_demo_summary_json_keys_and_consistency_with_csv(quick_demo):
    out, proc = quick_demo
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert {"config", "models", "fewshot", "retrieval", "findings", "files", "elapsed_s"} <= set(
        summary
    )
    for name in summary["files"]:
        assert (out / name).is_file(), name

    model = summary["config"]["study_model"]
    quality = summary["models"][model]
    assert {"shape", "colour", "background"} <= set(quality["zero_shot_acc1"])
    assert set(quality["recall_at_k"]["image_to_text"]) == {"1", "5", "10"}
    r = quality["recall_at_k"]["image_to_text"]
    assert 0 <= r["1"] <= r["5"] <= r["10"] <= 1  # recall@k cannot decrease with k
    assert -1 <= quality["alignment_score"] <= 1 and 0 <= quality["modality_gap"] <= 2

    # few-shot: every (labeling, method, shots) of the JSON is the mean of the per-seed CSV rows
    runs = pd.read_csv(out / "fewshot_runs.csv")
    assert {"shape", "background"} <= set(runs["labeling"])
    assert "prototype" in summary["fewshot"]["shape"]
    for labeling, methods in summary["fewshot"].items():
        for method, by_shots in methods.items():
            assert set(by_shots) == {"1", "2", "4", "8", "16"}
            for shots, entry in by_shots.items():
                rows = runs[
                    (runs.labeling == labeling)
                    & (runs.method == method)
                    & (runs.shots == int(shots))
                ]
                assert len(rows) == len(summary["config"]["seeds"]) == len(entry["acc1_per_seed"])
                assert entry["acc1"] == pytest.approx(rows["acc1"].mean())
    # retrieval: the JSON holds the CSV's mAP values
    retrieval = pd.read_csv(out / "retrieval.csv")
    raw = retrieval[
        (retrieval.labeling == "shape")
        & (retrieval.task == "image→image")
        & (retrieval.method == "raw")
    ]
    assert summary["retrieval"]["shape"]["image_to_image"]["raw"]["mAP"] == pytest.approx(
        raw["mAP"].item()
    )
    for finding in summary["findings"].values():
        assert finding["verdict"] in {
            "holds",
            "mixed",
            "does not hold",
            "no clear difference",
            "not measured",
        }
    assert {"pca_helps_on_shape", "pca_hurts_on_background"} <= set(summary["findings"])


def test_verdict_of_every_demo_finding_follows_the_rule(quick_demo):
    from skvlm.studies._findings_zoo import gain_leaves
    from skvlm.studies._intervals import verdict

    out, proc = quick_demo
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    for key, finding in summary["findings"].items():
        if "expected_sign" not in finding:  # an identity (S_intra recovery): no interval
            continue
        names = finding.get("gains") or [k for k in finding if k.endswith(("_gain", "_reduction"))]
        assert names, key
        gains = {n: finding[n] for n in names}
        leaves = [g for g in gain_leaves(gains) if g is not None]
        assert leaves, key
        assert all(set(g) == {"mean", "ci95"} for g in leaves), key
        assert finding["verdict"] == verdict(leaves, finding["expected_sign"]), key


# --------------------------------------------------------------------------- command-line errors


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["bogus"], "invalid choice"),
        ([], "required"),
        (["fewshot"], "--data"),
        (["fewshot", "--data", ".", "--shots", "a"], "--shots"),
        (["fewshot", "--data", ".", "--shots", "0,1"], "positive"),
        (["fewshot", "--data", ".", "--methods", "prototype,nope"], "nope"),
        (["retrieval", "--data", ".", "--n-queries", "-3"], "--n-queries"),
    ],
)
def test_bad_options_give_one_line_error(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err and "Traceback" not in err


def test_bad_input_at_run_time_is_one_line_error(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    status = main(["fewshot", "--data", str(missing), "--out", str(tmp_path / "r"), "--quiet"])
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no-such-folder" in err
    assert not (tmp_path / "r" / "report.md").exists()


def test_cli_error_in_subprocess_has_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "skvlm", "retrieval", "--data", ".", "--methods", "oti"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "raw, inversion, pca" in proc.stderr


def test_help_lists_every_command_and_option(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for command in ("demo", "fewshot", "retrieval", "train-tiny"):
        assert command in text
    with pytest.raises(SystemExit):
        main(["fewshot", "--help"])
    text = capsys.readouterr().out
    for option in (
        "--model",
        "--pretrained",
        "--data",
        "--shots",
        "--seeds",
        "--methods",
        "--cache",
        "--device",
        "--out",
        "--threads",
    ):
        assert option in text


def test_fewshot_command_on_an_image_folder(tmp_path):
    from PIL import Image

    from skvlm.datasets import make_scenes

    scenes = make_scenes(50, random_state=3)
    root = tmp_path / "data"
    for i, (image, shape) in enumerate(zip(scenes.images, scenes.factors["background"])):
        (root / shape).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / shape / f"{i}.png")
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
            "prototype,tip_adapter",
            "--shots",
            "1,2",
            "--seeds",
            "0,1",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert status == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["n_images"] == 50
    assert summary["config"]["n_classes"] == scenes.factors["background"].nunique()
    assert summary["config"]["tune"] is True and summary["config"]["templates"] == "reference"
    entry = summary["fewshot"]["classes"]["prototype"]["2"]
    assert len(entry["acc1_per_seed"]) == 2 and 0 <= entry["acc1"] <= 1
    assert entry["acc1_ci95"][0] <= entry["acc1"] <= entry["acc1_ci95"][1]
    # the chosen values are in summary.json and in the per-run CSV
    chosen = summary["fewshot"]["classes"]["tip_adapter"]["1"]["params_per_seed"]
    assert len(chosen) == 2 and all(set(p) == {"alpha", "beta"} for p in chosen)
    runs = pd.read_csv(out / "fewshot_runs.csv")
    tip = runs[(runs.method == "tip_adapter") & (runs.shots == 1)].sort_values("seed")
    assert [json.loads(p) for p in tip["params"]] == chosen
    report = (out / "report.md").read_text()
    assert "fewshot_classes.png" in report and "validation shots" in report


def test_a_damaged_image_stops_the_study_or_is_skipped_and_listed(tmp_path, capsys):
    from PIL import Image

    from skvlm.datasets import make_scenes

    scenes = make_scenes(12, random_state=4)
    root = tmp_path / "data"
    for i, (image, label) in enumerate(zip(scenes.images, scenes.factors["background"])):
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / label / f"{i}.png")
    damaged = next(root.rglob("*.png"))
    damaged.write_bytes(damaged.read_bytes()[:60])
    options = [
        "fewshot",
        "--data",
        str(root),
        "--model",
        "skvlm-tiny",
        "--device",
        "cpu",
        "--methods",
        "prototype",
        "--shots",
        "1",
        "--seeds",
        "0",
        "--quiet",
        "--no-tune",
    ]
    assert main(options + ["--out", str(tmp_path / "stop")]) == 2
    assert damaged.name in capsys.readouterr().err
    # The CLI formats warnings as one line; under pytest they are recorded, not printed.
    with pytest.warns(UserWarning, match=damaged.name):
        status = main(options + ["--out", str(tmp_path / "skip"), "--skip-unreadable"])
    assert status == 0
    summary = json.loads((tmp_path / "skip" / "summary.json").read_text())
    assert summary["unreadable"] == [str(damaged)]
    assert summary["config"]["n_images"] == 11


# --------------------------------------------------------------------------- the study functions


def test_fewshot_study_runs_every_method_shot_seed_on_the_same_split():
    rng = np.random.default_rng(0)
    X, y = _signal_plus_noise(rng, noise=0.1)
    runs = run_fewshot_study(
        X,
        y,
        methods=["prototype", "prototype_pca"],
        shots=[1, 3],
        seeds=[0, 1],
        pca_text_embeddings=np.eye(4)[:2],
    )
    assert len(runs) == 2 * 2 * 2
    # both methods see the same test rows for a given shots/seed
    assert runs.groupby(["shots", "seed"])["n_test"].nunique().eq(1).all()
    # 3 support + min(3, 4) validation shots per class are not test rows
    assert (runs[runs.shots == 3]["n_test"] == 24 - 2 * (3 + 3)).all()
    assert (runs[runs.shots == 3]["n_val"] == 2 * 3).all()
    assert (runs["acc1"] == 1.0).all()  # separable classes
    again = run_fewshot_study(X, y, methods=["prototype"], shots=[1, 3], seeds=[0, 1])
    pd.testing.assert_series_equal(
        again["acc1"].reset_index(drop=True),
        runs[runs.method == "prototype"]["acc1"].reset_index(drop=True),
    )


def test_fewshot_study_pca_pipeline_projects_before_the_classifier():
    # PCA← onto the class axis (text rows +e0 / -e0) removes the noise axes, so the
    # prototype classifier after it is perfect while the raw one is not.
    rng = np.random.default_rng(1)
    X, y = _signal_plus_noise(rng, n_per_class=40, noise=3.0)
    text = np.array([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]])
    runs = run_fewshot_study(
        X,
        y,
        methods=["prototype", "prototype_pca"],
        shots=[1],
        seeds=[0, 1, 2],
        pca_text_embeddings=text,
    )
    acc = runs.groupby("method")["acc1"].mean()
    assert acc["prototype_pca"] == 1.0
    assert acc["prototype"] < 0.9


def test_fewshot_study_skips_what_cannot_run():
    rng = np.random.default_rng(2)
    X, y = _signal_plus_noise(rng, n_per_class=5)
    with pytest.warns(UserWarning, match="shots=5 skipped"):
        runs = run_fewshot_study(
            X, y, methods=["prototype", "zeroshot", "prototype_pca"], shots=[1, 5], seeds=[0]
        )
    assert set(runs["shots"]) == {1}
    assert set(runs.attrs["skipped"]) == {"zeroshot", "prototype_pca"}
    with pytest.raises(ValueError, match="'nope'"):
        run_fewshot_study(X, y, methods=["nope"])
    with pytest.raises(ValueError, match="10 rows but y has 3"):
        run_fewshot_study(X, y[:3])


def test_summarize_fewshot_mean_and_sample_std():
    runs = pd.DataFrame(
        {
            "labeling": ["s"] * 4,
            "method": ["p", "p", "p", "q"],
            "label": ["P", "P", "P", "Q"],
            "shots": [1, 1, 1, 1],
            "seed": [0, 1, 2, 0],
            "acc1": [0.2, 0.4, 0.6, 0.5],
            "mean_per_class_recall": [0.1, 0.1, 0.1, 0.5],
            "n_test": [9] * 4,
        }
    )
    summary = summarize_fewshot(runs).set_index("method")
    assert summary.loc["p", "acc1"] == pytest.approx(0.4)
    assert summary.loc["p", "acc1_std"] == pytest.approx(0.2)  # sample std of .2 .4 .6
    assert summary.loc["q", "acc1_std"] == 0.0 and summary.loc["q", "n_seeds"] == 1


def test_retrieval_study_queries_and_gallery_are_disjoint_and_pca_is_applied():
    rng = np.random.default_rng(3)
    X, y = _signal_plus_noise(rng, n_per_class=30, noise=3.0)
    text = np.array([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]])
    res = run_retrieval_study(
        X, y, pca_text_embeddings=text, n_queries=10, text_emb=X, text_labels=y
    ).set_index(["task", "method"])
    assert (res["n_queries"] == 10).all() and (res["n_gallery"] == 50).all()
    assert res.loc[("image→image", "pca"), "mAP"] == pytest.approx(1.0)
    assert res.loc[("image→image", "raw"), "mAP"] < 0.9
    assert ("text→text", "raw") in res.index
    assert "inversion" in res.attrs["skipped"]  # no encoder given


def test_retrieval_study_caps_queries_at_half_and_checks_labels():
    rng = np.random.default_rng(4)
    X = _unit_rows(rng, 8, 3)
    y = np.array([0, 1] * 4)
    res = run_retrieval_study(X, y, methods=["raw"], n_queries=100)
    assert res["n_queries"].item() == 4 and res["n_gallery"].item() == 4
    with pytest.raises(ValueError, match="8 rows but 3 labels"):
        run_retrieval_study(X, y[:3], methods=["raw"])
    with pytest.raises(ValueError, match="text_labels"):
        run_retrieval_study(X, y, text_emb=X, methods=["raw"])


def test_diagnose_embeddings_recovers_intra_similarity_when_enough_images():
    rng = np.random.default_rng(5)
    d = 4  # 10 unknowns; needs >= 10 + d images
    images, texts = _unit_rows(rng, 40, d), _unit_rows(rng, 40, d)
    labels = np.arange(40) % 2
    diag = diagnose_embeddings(images, texts, labels)
    assert diag["recovery_max_abs_error"] < 1e-6
    assert diag["alignment_score"] == pytest.approx(np.mean(np.sum(images * texts, axis=1)))
    assert set(diag["distributions"]) == {
        "intra_class",
        "inter_class",
        "intra_modal",
        "inter_modal",
    }
    few = diagnose_embeddings(images[:12], texts[:12], labels[:12])
    assert few["recovery_max_abs_error"] is None


def test_caption_mentions():
    assert _mentions("a red star on stripes.", "background", "striped")
    assert not _mentions("a red star.", "background", "striped")
    assert _mentions("a photo of a star in the top left.", "shape", "star")
    assert not _mentions("a photo of a starfish.", "shape", "star")


def test_no_warning_leaks_from_fewshot_study_on_clean_input():
    rng = np.random.default_rng(6)
    X, y = _signal_plus_noise(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_fewshot_study(X, y, methods=["prototype"], shots=[2], seeds=[0])


def test_train_tiny_options_come_from_the_training_package(capsys):
    pytest.importorskip("skvlm.training._cli")
    with pytest.raises(SystemExit) as exc:
        main(["train-tiny", "--steps", "many"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--steps" in err
