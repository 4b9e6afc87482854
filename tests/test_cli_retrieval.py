"""``python -m skvlm retrieval`` on captioned pairs, several models and datasets (issue 17, item 3)."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from skvlm.studies._retrieval_benchmark import image_text_recalls

MODELS = ["skvlm-tiny", "skvlm-tiny-shared"]


def _clip_benchmark_recalls(images, texts, texts_image_index, ks):
    """CLIP_benchmark's zeroshot_retrieval.evaluate, transcribed to numpy.

    scores = texts @ images.T; positive_pairs[text, its image] = True; for each k,
    per-row recall = true positives in the top k / positives, then the fraction of rows
    with recall > 0 (texts for image_retrieval, images for text_retrieval).
    """
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    scores = unit(texts) @ unit(images).T
    positive = np.zeros_like(scores, dtype=bool)
    positive[np.arange(len(scores)), texts_image_index] = True

    def recall(s, pos, k):
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]
        hits = np.take_along_axis(pos, top, axis=1).sum(axis=1)
        return float(((hits / pos.sum(axis=1)) > 0).mean())

    out = {}
    for k in ks:
        out[f"image_retrieval_recall@{k}"] = recall(scores, positive, k)
        out[f"text_retrieval_recall@{k}"] = recall(scores.T, positive.T, k)
    return out


def test_image_text_recalls_match_clip_benchmark():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(30, 8))
    ids = np.repeat(np.arange(30), 3)[rng.permutation(90)][:70]  # 0-3 captions per image
    ids[:30] = np.arange(30)  # every image has at least one caption
    texts = images[ids] + rng.normal(scale=1.5, size=(70, 8))
    ours = image_text_recalls(images, texts, ids, ks=(1, 5, 10))
    reference = _clip_benchmark_recalls(images, texts, ids, (1, 5, 10))
    assert ours == pytest.approx(reference)
    assert 0 < ours["image_retrieval_recall@1"] < ours["image_retrieval_recall@10"] < 1


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """60 generated scenes as PNGs; pairs.csv with two captions each and a shape label;
    the same images in a class-per-folder tree by shape."""
    from skvlm.datasets import make_scenes

    root = tmp_path_factory.mktemp("pairs")
    scenes = make_scenes(60, random_state=3)
    rows = []
    for i, (image, caption) in enumerate(zip(scenes.images, scenes.captions)):
        shape, colour = scenes.factors["shape"][i], scenes.factors["colour"][i]
        path = root / "images" / f"{i:03d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(image).save(path)
        (root / "folder" / shape).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "folder" / shape / f"{i:03d}.png")
        rows += [
            {"image": f"images/{i:03d}.png", "caption": caption, "label": shape},
            {"image": f"images/{i:03d}.png", "caption": f"a {colour} {shape}.", "label": shape},
        ]
    with open(root / "pairs.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "caption", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def benchmark(generated, tmp_path_factory):
    from skvlm.__main__ import main

    out = tmp_path_factory.mktemp("out")
    status = main(
        [
            "retrieval",
            "--data",
            str(generated / "pairs.csv"),
            str(generated / "folder"),
            "--model",
            ",".join(MODELS),
            "--device",
            "cpu",
            "--methods",
            "raw,pca",
            "--n-queries",
            "20",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    return out


def test_flat_table_has_one_row_per_model_dataset_task_method_metric(benchmark, generated):
    with open(benchmark / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    jsonl = [json.loads(line) for line in (benchmark / "results.jsonl").read_text().splitlines()]
    assert len(rows) == len(jsonl)
    assert [r["value"] for r in jsonl] == pytest.approx([float(r["value"]) for r in rows])
    keys = [(r["model"], r["dataset"], r["task"], r["method"], r["metric"]) for r in rows]
    assert len(set(keys)) == len(keys)
    pairs, folder = str(generated / "pairs.csv"), str(generated / "folder")
    recalls = {f"{side}_retrieval_recall@{k}" for side in ("image", "text") for k in (1, 5, 10)}
    intra = {"mAP", "mAP_at_R", "R_precision"}
    expected = set()
    for model in MODELS:
        expected |= {(model, pairs, "zeroshot_retrieval", "raw", m) for m in recalls}
        for task in ("text_to_text", "image_to_image"):
            expected |= {
                (model, pairs, task, method, m) for method in ("raw", "pca") for m in intra
            }
        expected |= {
            (model, folder, "image_to_image", method, m) for method in ("raw", "pca") for m in intra
        }
    assert set(keys) == expected
    assert all(0.0 <= float(r["value"]) <= 1.0 for r in rows)
    summary = json.loads((benchmark / "summary.json").read_text())
    assert {"results.csv", "results.jsonl", "report.md", "summary.json"} <= set(summary["files"])
    for r in jsonl:
        nested = summary["results"][r["model"]][r["dataset"]][r["task"]][r["method"]]
        assert nested[r["metric"]] == pytest.approx(r["value"])
    assert "image_retrieval_recall@1" in (benchmark / "report.md").read_text()


def test_zero_shot_recalls_are_clip_benchmarks_on_the_models_embeddings(benchmark, generated):
    from skvlm import CLIPEncoder
    from skvlm.datasets import load_captioned_pairs

    pairs = load_captioned_pairs(generated / "pairs.csv")
    rows = [json.loads(line) for line in (benchmark / "results.jsonl").read_text().splitlines()]
    for model in MODELS:
        encoder = CLIPEncoder(model=model, device="cpu")
        reference = _clip_benchmark_recalls(
            encoder.encode_images(pairs.unique_paths),
            encoder.encode_text(pairs.captions),
            pairs.image_ids,
            (1, 5, 10),
        )
        measured = {
            r["metric"]: r["value"]
            for r in rows
            if r["model"] == model and r["task"] == "zeroshot_retrieval"
        }
        assert measured == pytest.approx(reference, abs=1e-6)
        by_k = [measured[f"text_retrieval_recall@{k}"] for k in (1, 5, 10)]
        assert by_k == sorted(by_k)
    t2t = [r for r in rows if r["task"] == "text_to_text"]
    assert {r["n_queries"] for r in t2t} == {20} and {r["n_gallery"] for r in t2t} == {100}


def test_capped_queries_are_said_and_recorded(generated, tmp_path, capsys):
    from skvlm.__main__ import main

    out = tmp_path / "out"
    # The CLI formats warnings as one line; under pytest they are recorded, not printed.
    with pytest.warns(
        UserWarning, match="n_queries=500 is more than half of the 60 image rows: 30 queries"
    ):
        status = main(
            [
                "retrieval",
                "--data",
                str(generated / "folder"),
                "--model",
                "skvlm-tiny",
                "--device",
                "cpu",
                "--methods",
                "raw",
                "--n-queries",
                "500",
                "--quiet",
                "--out",
                str(out),
            ]
        )
    assert status == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["n_queries"] == 30
    assert summary["config"]["n_queries_asked"] == 500
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["n_queries"] for r in rows} == {30}
    assert {"results.csv", "results.jsonl"} <= set(summary["files"])
