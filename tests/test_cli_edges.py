"""Issue 17, items 5-7: silent wrong results and rough edges a newcomer met.

The library-level ones (encoder input guessing, error hints, device names, progress
bars, few-shot splits) and the command line's (``--pretrained none``, hints, one-line
warnings, stale report files).
"""

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from skvlm import CLIPEncoder
from skvlm.model_selection import FewShotSplit


@pytest.fixture(scope="module")
def tiny_encoder():
    return CLIPEncoder(model="skvlm-tiny", device="cpu")


# --------------------------------------------------------------------------- item 5


@pytest.mark.parametrize("missing", ["photos/cat_0001", "data/images/IMG_2043.HEIC2"])
def test_missing_path_without_image_suffix_is_an_error_not_text(tiny_encoder, missing):
    with pytest.raises(FileNotFoundError, match="modality='text'") as info:
        tiny_encoder.transform([missing])
    assert repr(missing) in str(info.value)
    # What is meant as text still is: spaces, or an explicit modality.
    assert tiny_encoder.transform(["a red/blue circle"]).shape == (1, 64)
    assert tiny_encoder.set_params(modality="text").transform([missing]).shape == (1, 64)
    tiny_encoder.set_params(modality="auto")


def test_missing_path_like_string_is_skipped_under_on_error_skip(tmp_path, tiny_images):
    from skvlm.encoders import UnreadableImageWarning

    path = tmp_path / "ok.png"
    Image.fromarray(tiny_images[0][0]).save(path)
    encoder = CLIPEncoder(model="skvlm-tiny", device="cpu", on_error="skip")
    with pytest.warns(UnreadableImageWarning, match="photos/gone"):
        Z, kept = encoder.transform([str(path), "photos/gone"], return_indices=True)
    assert Z.shape == (1, 64) and kept.tolist() == [0]


# --------------------------------------------------------------------------- item 7


def test_image_encoder_errors_do_not_suggest_modality(tmp_path):
    pytest.importorskip("timm")
    from skvlm import ImageEncoder

    encoder = ImageEncoder(model="resnet18", pretrained=None, device="cpu")
    with pytest.raises(FileNotFoundError) as info:
        encoder.transform([str(tmp_path / "missing.png")])
    assert "missing.png" in str(info.value)
    assert "modality" not in str(info.value)


def test_unknown_device_lists_the_valid_ones():
    from skvlm.models import resolve_device

    with pytest.raises(ValueError) as info:
        resolve_device("gpu")
    message = str(info.value)
    assert "'gpu'" in message and "'cuda'" in message
    assert "Valid devices here: 'auto', 'cpu'" in message


def test_progress_bar_counts_images(tiny_images, capsys):
    images = list(tiny_images[0][:10])
    CLIPEncoder(model="skvlm-tiny", device="cpu", batch_size=4, verbose=1).transform(images)
    err = capsys.readouterr().err
    assert "10/10" in err and "image" in err
    assert "3/3" not in err  # not batches


def test_fewshot_split_warns_when_a_class_has_no_test_rows():
    y = np.array([0] * 6 + [1] * 2)
    with pytest.warns(UserWarning, match=r"leaves 1 class\(es\) without test rows \(1\)"):
        splits = list(FewShotSplit(n_shots=2, n_splits=2, random_state=0).split(y, y))
    assert all(set(y[test]) == {0} for _, test in splits)
    y = np.array([0] * 20 + [1] * 3)
    with pytest.warns(UserWarning, match="test_size=2"):
        list(FewShotSplit(n_shots=2, n_splits=5, test_size=2, random_state=0).split(y, y))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(FewShotSplit(n_shots=2, n_splits=2, random_state=0).split(y, y))


# --------------------------------------------------------------------------- item 6: the CLI


def _folder(root, tiny_images, broken=True):
    images, colours = tiny_images
    for i, (image, colour) in enumerate(zip(images, colours)):
        (root / colour).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / colour / f"{i:02d}.png")
    if broken:
        (root / "red" / "zero.png").write_bytes(b"")
    return root


def _retrieval(tmp_path, data, *extra):
    from skvlm.__main__ import main

    out = tmp_path / "out"
    argv = [
        "retrieval",
        "--data",
        str(data),
        "--model",
        "skvlm-tiny",
        "--device",
        "cpu",
        "--methods",
        "raw",
        "--n-queries",
        "6",
        "--out",
        str(out),
        *extra,
    ]
    return main(argv), out


def test_cli_pretrained_none_means_random_weights(tmp_path, tiny_images):
    data = _folder(tmp_path / "data", tiny_images, broken=False)
    status, out = _retrieval(tmp_path, data, "--pretrained", "none", "--quiet")
    assert status == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["pretrained"] == "None"


def test_cli_unreadable_image_error_suggests_skip_unreadable(tmp_path, tiny_images, capsys):
    data = _folder(tmp_path / "data", tiny_images)
    status, _ = _retrieval(tmp_path, data, "--quiet")
    err = capsys.readouterr().err
    assert status == 2
    assert "zero.png" in err and "the file is empty (0 bytes)" in err
    assert "--skip-unreadable" in err and "BytesIO" not in err


def test_cli_warnings_are_one_line_and_progress_counts_images(tmp_path, tiny_images):
    import os
    import subprocess
    import sys
    from pathlib import Path

    data = _folder(tmp_path / "data", tiny_images)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "skvlm",
            "retrieval",
            "--data",
            str(data),
            "--model",
            "skvlm-tiny",
            "--device",
            "cpu",
            "--methods",
            "raw",
            "--n-queries",
            "6",
            "--skip-unreadable",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    warning_lines = [line for line in lines if ": warning: " in line]
    assert any(
        "UnreadableImageWarning" in line and "zero.png" in line and "empty (0 bytes)" in line
        for line in warning_lines
    ), result.stderr
    assert "frozen runpy" not in result.stderr
    assert not any(line.startswith("  warnings.warn") for line in lines)
    assert "25/25" in result.stderr  # the progress bar counts images (not batches)


def test_cli_reused_out_loses_the_earlier_reports_stale_files(tmp_path, tiny_images, capsys):
    data = _folder(tmp_path / "data", tiny_images, broken=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text(
        json.dumps(
            {"files": ["report.md", "summary.json", "fewshot_classes.png", "fewshot_runs.csv"]}
        )
    )
    for name in ("fewshot_classes.png", "fewshot_runs.csv", "my_notes.txt"):
        (out / name).write_text("earlier")
    status, _ = _retrieval(tmp_path, data, "--quiet")
    assert status == 0
    assert not (out / "fewshot_classes.png").exists()
    assert not (out / "fewshot_runs.csv").exists()
    assert (out / "my_notes.txt").read_text() == "earlier"  # not the report's: kept
    assert "removed 2 file(s)" in capsys.readouterr().err
    assert all(
        (out / name).exists() for name in json.loads((out / "summary.json").read_text())["files"]
    )


def test_lda_collapse_note_says_what_the_scores_become():
    from skvlm import LDAClassifier

    X = np.eye(3, 4)  # one row per class: no spread within the classes
    with pytest.warns(UserWarning, match="chance accuracy") as record:
        LDAClassifier().fit(X, [0, 1, 2])
    assert "zero-shot" not in str(record[0].message)
    with pytest.warns(UserWarning, match="zero-shot accuracy") as record:
        clf = LDAClassifier(text_weights=np.eye(3, 4)).fit(X, [0, 1, 2])
    assert "chance" not in str(record[0].message)
    assert clf.predict(X).tolist() == [0, 1, 2]  # what the note says: the text's answer
