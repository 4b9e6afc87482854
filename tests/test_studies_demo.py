"""The demo's mechanics: zoo measurements pinned by hand, findings follow the verdict rule,
absent models are skipped with a note. No test asserts what a finding concludes."""

import numpy as np
import pandas as pd
import pytest

from skvlm.studies import _demo, _zoo
from skvlm.studies._findings_zoo import _finding, gain_leaves, headroom


def test_histogram_overlap_by_hand():
    a = np.array([0.01, 0.02, 0.5, 0.51])  # two bins of 0.04 width: [0, .04) and [.48, .52)
    assert _zoo.histogram_overlap(a, a) == pytest.approx(1.0)
    assert _zoo.histogram_overlap(a[:2], a[2:]) == pytest.approx(0.0)
    # half of b's mass lies where a's does: overlap = min(.5, .5) + min(.5, 0)
    b = np.array([0.01, 0.9])
    assert _zoo.histogram_overlap(a, b) == pytest.approx(0.5)
    # the edges: -1 and 1 fall in the first and last bins, not outside
    assert _zoo.histogram_overlap(np.array([1.0]), np.array([0.99])) == pytest.approx(1.0)


def test_overlap_statistic_value_interval_and_pairing():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1, 1, 300), rng.uniform(-1, 1, 300)
    single = _zoo.overlap_statistic([(1, a, b)])
    assert single["mean"] == pytest.approx(_zoo.histogram_overlap(a, b))
    low, high = single["ci95"]
    assert low < high
    # the same pairs on both sides of a difference: every resample gives exactly 0
    assert _zoo.overlap_statistic([(1, a, b), (-1, a, b)]) == {"mean": 0.0, "ci95": [0.0, 0.0]}
    # seeded
    assert _zoo.overlap_statistic([(1, a, b)]) == single


def test_draw_pairs_are_distinct_rows_of_the_right_kind():
    labels = np.repeat(["x", "y", "z"], 20)
    pairs = _zoo.draw_pairs(labels, 100, random_state=0)
    i, j = pairs["same"]
    assert len(i) == len(pairs["different"][0]) == 100
    assert np.all(labels[i] == labels[j]) and np.all(i != j)
    i, j = pairs["different"]
    assert np.all(labels[i] != labels[j])
    assert np.all(pairs["any"][0] != pairs["any"][1])
    again = _zoo.draw_pairs(labels, 100, random_state=0)
    assert all(np.array_equal(again[k][0], pairs[k][0]) for k in pairs)


def test_pair_cosines_without_a_text_tower():
    enc = {"images": np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]), "captions": None}
    pairs = {
        "same": (np.array([0]), np.array([2])),
        "different": (np.array([0]), np.array([1])),
        "any": (np.array([1]), np.array([2])),
    }
    cos = _zoo.pair_cosines(enc, pairs)
    np.testing.assert_allclose(cos["same"], [np.sqrt(0.5)])
    np.testing.assert_allclose(cos["different"], [0.0])
    assert cos["image_text"] is None
    assert _zoo.indicator_difference(cos, cos, "modality_overlap") is None


def test_zero_shot_and_recall_per_item_by_hand():
    weights = np.array([[1.0, 0.0], [0.0, 1.0]])
    images = np.array([[2.0, 0.1], [0.2, 1.0], [1.0, 0.9]])
    np.testing.assert_array_equal(
        _zoo.correct_per_image(images, weights, np.array([0, 1, 1])), [1.0, 1.0, 0.0]
    )
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    gallery = np.array([[1.0, 0.05], [0.0, 1.0], [0.0, 1.0]])
    np.testing.assert_array_equal(_zoo.recall_at_1_per_query(queries, gallery), [1.0, 1.0, 0.0])


def test_class_weights_mean_of_normalised_prompts_and_articles():
    seen = []

    def encode_text(texts):
        seen.extend(texts)
        return np.array([[3.0, 0.0] if "a" in t.split()[-1] else [0.0, 1.0] for t in texts])

    weights, rows = _zoo.class_weights(encode_text, ["orange", "ka"], ["a {}.", "a {} x"])
    assert seen == ["an orange.", "an orange x", "a ka.", "a ka x"]
    assert rows.shape == (2, 2, 2)
    np.testing.assert_allclose(np.linalg.norm(weights, axis=1), 1.0)


def test_image_only_model_gain_is_paired_over_seeds():
    runs = pd.DataFrame(
        {
            "model": ["a"] * 4 + ["b"] * 4,
            "method": "lda",
            "seed": [0, 0, 1, 1] * 2,
            "shots": [1, 2] * 4,
            "acc1": [0.5, 0.7, 0.6, 0.8, 0.4, 0.6, 0.4, 0.6],
        }
    )
    g = _zoo.paired_model_gain(runs, "lda", "a", "b")
    # per-seed gains (mean over shots): 0.1 and 0.2
    assert g["mean"] == pytest.approx(0.15)
    assert _zoo.paired_model_gain(runs, "lda", "a", "missing") is None


def test_finding_verdict_rests_on_every_nested_gain():
    up, flat = {"mean": 0.1, "ci95": [0.05, 0.2]}, {"mean": 0.0, "ci95": [-0.1, 0.1]}
    f = _finding("c", {"acc1_gain": {"x": up, "y": up}}, 1, acc1={"x": 0.5})
    assert f["verdict"] == "holds" and f["expected_sign"] == 1 and f["gains"] == ["acc1_gain"]
    f = _finding("c", {"acc1_gain": {"x": up, "y": flat}}, 1)
    assert f["verdict"] == "mixed"
    assert _finding("c", {"g": up}, -1)["verdict"] == "does not hold"
    assert list(gain_leaves({"a": {"b": up, "c": None}, "d": flat})) == [up, None, flat]


def _measured(acc, zero_shot=0.6, background=0.5):
    rows = [
        {"labeling": lab, "method": m, "shots": k, "seed": s, "acc1": acc[(lab, m, k)]}
        for (lab, m, k) in acc
        for s in (0, 1)
    ]
    model = {
        "zero_shot_acc1": {"shape": zero_shot, "background": background},
        "chance_zero_shot": {"shape": 0.1},
        "chance_recall_at_1": 0.01,
        "recall_at_k": {"image_to_text": {"1": 0.05}},
    }
    return {
        "main_model": "m",
        "fewshot": {"runs": pd.DataFrame(rows)},
        "diagnostics": {"m": model, "ssl": {"image_only": True}},
    }


def test_headroom_reads_the_bounds_of_issue_14():
    acc = {
        ("shape", "zeroshot", 16): 0.6,
        ("shape", "lda", 16): 0.7,
        ("shape", "lda", 1): 0.5,
        ("background", "lda", 16): 0.98,
    }
    h = headroom(_measured(acc))
    assert h["zero_shot_main"] == 0.6 and h["zero_shot_main_in_0.55_0.90"]
    assert h["max_method_acc1"] == 0.98 and not h["max_method_acc1_at_most_0.97"]
    assert h["max_method_at"] == {"labeling": "background", "method": "lda", "shots": 16}
    assert h["best_max_shot_method"] == "lda"
    assert h["best_max_shot_minus_zero_shot"] == pytest.approx(0.1)
    assert h["background_zero_shot_below_0.95"]
    assert set(h["per_model"]) == {"m"}  # the image-only model has no zero-shot
    assert h["per_model"]["m"]["zero_shot_over_2x_chance"]
    assert not h["per_model"]["m"]["R@1_over_10x_chance"]  # 0.05 < 10 x 0.01


def test_absent_weights_are_skipped_with_a_note(monkeypatch):
    from skvlm.models import _registry

    assert "not a model" in _demo._absent_reason("skvlm-no-such-model")
    monkeypatch.setattr(_registry, "shipped_weights", lambda name: None)
    reason = _demo._absent_reason("skvlm-tiny")
    assert "weights absent" in reason and "skvlm-tiny.safetensors" in reason

    class Scenes:
        images = np.zeros((2, 8, 8, 3), dtype=np.uint8)
        captions = ["a", "b"]

    with pytest.raises(RuntimeError, match="weights absent"):
        _demo._encode_models(["skvlm-tiny"], Scenes(), "cpu")


def test_scene_world_labelings_and_templates():
    from skvlm.training import COMMON

    world = _demo.scene_world()
    assert world["version"] == COMMON["world"] == 3  # the demo runs on the zoo's world
    assert {"shape", "background"} <= set(world["fewshot_labelings"]) <= set(world["labelings"])
    for factor in world["labelings"]:
        assert all("{}" in t for t in world["templates"][factor])
    v1 = _demo.scene_world(1)
    assert v1["labelings"] == ["shape", "colour", "background"]
    with pytest.raises(ValueError, match="version"):
        _demo.scene_world(7)


def test_demo_command_takes_a_model_list():
    from skvlm.__main__ import build_parser

    args = build_parser().parse_args(["demo", "--models", "skvlm-tiny, skvlm-tiny-ssl"])
    assert args.models == ["skvlm-tiny", "skvlm-tiny-ssl"]
    assert build_parser().parse_args(["demo"]).models is None
