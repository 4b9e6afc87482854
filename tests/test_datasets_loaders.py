"""Tests of the real-data loaders: image folders, CoOp splits, captioned pairs."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from skvlm.datasets._loaders import (
    COOP_DATASETS,
    load_captioned_pairs,
    load_coop_split,
    load_image_folder,
)


def _png(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4, 3), value, dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def image_folder(tmp_path):
    root = tmp_path / "folder"
    _png(root / "dog" / "b.png")
    _png(root / "dog" / "a.PNG")
    _png(root / "cat" / "nested" / "deep.png")
    _png(root / "cat" / "z.png")
    (root / "cat" / "readme.txt").write_text("not an image")
    (root / "cat" / ".hidden.png").write_bytes(b"")
    (root / ".git").mkdir()
    (root / "loose_file.png").write_bytes(b"")  # not inside a class folder: ignored
    return root


# --------------------------------------------------------------------------- image folder


def test_image_folder_lists_sorted_classes_and_files(image_folder):
    data = load_image_folder(image_folder)
    assert data.target_names == ["cat", "dog"]
    rel = [os.path.relpath(p, image_folder) for p in data.paths]
    assert rel == [
        os.path.join("cat", "nested", "deep.png"),
        os.path.join("cat", "z.png"),
        os.path.join("dog", "a.PNG"),
        os.path.join("dog", "b.png"),
    ]
    assert list(data.labels) == ["cat", "cat", "dog", "dog"]
    assert data.target.tolist() == [0, 0, 1, 1]
    assert data.target.dtype == np.int64


def test_image_folder_return_X_y_feeds_an_encoder_shape(image_folder):
    paths, labels = load_image_folder(image_folder, return_X_y=True)
    assert len(paths) == len(labels) == 4
    assert all(os.path.isfile(p) for p in paths)


def test_image_folder_extensions_filter(image_folder):
    data = load_image_folder(image_folder, extensions=(".txt",), allow_empty=True)
    assert [os.path.basename(p) for p in data.paths] == ["readme.txt"]
    assert data.target_names == ["cat", "dog"]


def test_image_folder_errors_name_the_folder(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        load_image_folder(missing)
    (tmp_path / "flat").mkdir()
    _png(tmp_path / "flat" / "x.png")
    with pytest.raises(FileNotFoundError, match="No class folders"):
        load_image_folder(tmp_path / "flat")
    (tmp_path / "flat" / "empty_class").mkdir()
    with pytest.raises(FileNotFoundError, match="empty_class"):
        load_image_folder(tmp_path / "flat")
    assert load_image_folder(tmp_path / "flat", allow_empty=True).paths == []


def test_links_back_up_the_tree_are_not_followed_but_shared_folders_are(tmp_path):
    root = tmp_path / "data"
    for name in ("cat", "dog"):
        _png(root / name / f"{name}.png")
    _png(tmp_path / "shared" / "both.png")
    (root / "cat" / "up").symlink_to(root)  # would repeat the tree to ELOOP
    (root / "cat" / "again").symlink_to(root / "cat")
    (root / "dog" / "top").symlink_to(tmp_path)  # an ancestor of the root too
    (root / "dog" / "shared").symlink_to(tmp_path / "shared")
    (root / "cat" / "shared").symlink_to(tmp_path / "shared")
    data = load_image_folder(root)
    listed = sorted(
        (data.labels[i], os.path.relpath(path, root)) for i, path in enumerate(data.paths)
    )
    assert listed == [
        ("cat", os.path.join("cat", "cat.png")),
        ("cat", os.path.join("cat", "shared", "both.png")),
        ("dog", os.path.join("dog", "dog.png")),
        ("dog", os.path.join("dog", "shared", "both.png")),
    ]


# --------------------------------------------------------------------------- CoOp


def _coop_tree(root, dataset="Caltech101"):
    spec = COOP_DATASETS[dataset]
    dataset_dir = root / spec["dataset_dir"]
    image_dir = dataset_dir / spec["image_dir"]
    split = {"train": [], "val": [], "test": []}
    for label, name in enumerate(["Faces_easy", "airplanes"]):
        for subset, count in (("train", 3), ("val", 1), ("test", 2)):
            for i in range(count):
                rel = f"{name}/{subset}_{i}.png"
                _png(image_dir / rel, value=label)
                split[subset].append([rel, label, name])
    (dataset_dir / spec["split"]).write_text(json.dumps(split))
    return dataset_dir


def test_coop_split_from_data_root_and_from_dataset_dir(tmp_path):
    dataset_dir = _coop_tree(tmp_path)
    for root in (tmp_path, dataset_dir):
        data = load_coop_split(root, "caltech101")
        assert data.dataset == "Caltech101"
        assert data.target_names == ["Faces easy", "airplanes"]
        assert data.templates == ["a photo of a {}."]
        assert [len(data[s].paths) for s in ("train", "val", "test")] == [6, 2, 4]
        assert data.train.target.tolist() == [0, 0, 0, 1, 1, 1]
        assert list(data.test.labels) == ["Faces easy"] * 2 + ["airplanes"] * 2
        assert all(os.path.isabs(p) and os.path.isfile(p) for p in data.train.paths)
        assert data.split_json.endswith("split_zhou_Caltech101.json")


def test_coop_all_eleven_datasets_have_templates():
    assert len(COOP_DATASETS) == 11
    for name, spec in COOP_DATASETS.items():
        assert spec["templates"], name
        assert all(t.count("{}") == 1 for t in spec["templates"]), name
    assert COOP_DATASETS["DTD"]["templates"] == ["{} texture."]
    assert len(COOP_DATASETS["ImageNet"]["templates"]) == 7


@pytest.mark.parametrize(
    "alias, canonical",
    [("OxfordFlowers", "Flowers102"), ("DescribableTextures", "DTD"), ("food-101", "Food101")],
)
def test_coop_aliases(tmp_path, alias, canonical):
    dataset_dir = tmp_path / "d"
    _png(dataset_dir / "x" / "1.png")
    split = {"train": [["x/1.png", 0, "x"]], "val": [], "test": [["x/1.png", 0, "x"]]}
    (dataset_dir / "s.json").write_text(json.dumps(split))
    data = load_coop_split(dataset_dir, alias, dataset_dir / "s.json")
    assert data.dataset == canonical
    assert data.templates == COOP_DATASETS[canonical]["templates"]


def test_coop_unknown_dataset_suggests(tmp_path):
    with pytest.raises(ValueError, match="Caltech101"):
        load_coop_split(tmp_path, "Caltech-102x")


def test_coop_missing_split_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="split_zhou_OxfordPets.json"):
        load_coop_split(tmp_path, "OxfordPets")


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "Malformed split file"),
        (json.dumps({"train": []}), "'train', 'val' and 'test'"),
        (json.dumps({"train": [["a.png", 0]], "test": []}), r"train\[0\]"),
        (json.dumps({"train": [["a.png", "zero", "a"]], "test": []}), "not an integer"),
        (
            json.dumps({"train": [["a.png", 0, "a"], ["b.png", 0, "b"]], "test": []}),
            "label 0 is both",
        ),
    ],
)
def test_coop_malformed_split_names_file(tmp_path, content, match):
    split = tmp_path / "bad_split.json"
    split.write_text(content)
    with pytest.raises(ValueError, match=match) as info:
        load_coop_split(tmp_path, None, split, check_files=False)
    assert "bad_split.json" in str(info.value)


def test_coop_missing_image_is_named(tmp_path):
    dataset_dir = _coop_tree(tmp_path)
    victim = dataset_dir / "101_ObjectCategories" / "airplanes" / "test_1.png"
    victim.unlink()
    with pytest.raises(FileNotFoundError, match="test_1.png"):
        load_coop_split(tmp_path, "Caltech101")
    data = load_coop_split(tmp_path, "Caltech101", check_files=False)
    assert str(victim) in data.test.paths


def test_coop_fgvc_text_files(tmp_path):
    dataset_dir = tmp_path / "fgvc_aircraft"
    (dataset_dir).mkdir()
    (dataset_dir / "variants.txt").write_text("707-320\nA300B4\n")
    for subset, lines in (
        ("train", ["0001 707-320", "0002 A300B4"]),
        ("val", ["0003 A300B4"]),
        ("test", ["0004 707-320"]),
    ):
        (dataset_dir / f"images_variant_{subset}.txt").write_text("\n".join(lines) + "\n")
        for line in lines:
            _png(dataset_dir / "images" / f"{line.split()[0]}.jpg")
    data = load_coop_split(tmp_path, "FGVCAircraft")
    assert data.target_names == ["707-320", "A300B4"]
    assert data.train.target.tolist() == [0, 1]
    assert os.path.basename(data.test.paths[0]) == "0004.jpg"
    assert data.templates == ["a photo of a {}, a type of aircraft."]


def test_coop_imagenet_folders(tmp_path):
    dataset_dir = tmp_path / "imagenet"
    (dataset_dir).mkdir()
    (dataset_dir / "classnames.txt").write_text("n01 tench\nn02 great white shark\n")
    for split in ("train", "val"):
        for wnid in ("n01", "n02"):
            _png(dataset_dir / "images" / split / wnid / "0.png")
    data = load_coop_split(tmp_path, "ImageNet")
    assert data.target_names == ["tench", "great white shark"]
    assert list(data.train.labels) == ["tench", "great white shark"]
    assert data.val.paths == data.test.paths
    assert "/val/" in data.test.paths[0].replace(os.sep, "/")


# --------------------------------------------------------------------------- captions


@pytest.fixture
def caption_images(tmp_path):
    for name in ("a.png", "b.png"):
        _png(tmp_path / "imgs" / name)
    return tmp_path


def test_captions_csv(caption_images):
    path = caption_images / "pairs.csv"
    path.write_text(
        'image,caption\nimgs/a.png,"a red, round circle"\n'
        "imgs/b.png,a blue star\nimgs/a.png,red circle\n"
    )
    pairs = load_captioned_pairs(path)
    assert pairs.captions == ["a red, round circle", "a blue star", "red circle"]
    assert pairs.image_ids.tolist() == [0, 1, 0]
    assert pairs.paths[0] == pairs.paths[2] == str(caption_images / "imgs" / "a.png")
    assert pairs.unique_paths == [pairs.paths[0], pairs.paths[1]]


def test_captions_jsonl_with_root_and_columns(caption_images, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere")
    path = other / "pairs.jsonl"
    path.write_text(
        '{"file_name": "a.png", "sentence": "x"}\n\n{"file_name": "b.png", "sentence": "y"}\n'
    )
    pairs = load_captioned_pairs(
        path, root=caption_images / "imgs", path_column="file_name", caption_column="sentence"
    )
    assert pairs.captions == ["x", "y"]
    assert pairs.image_ids.tolist() == [0, 1]


def test_captions_errors_name_the_file(caption_images):
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        load_captioned_pairs(caption_images / "missing.csv")
    bad = caption_images / "bad.jsonl"
    bad.write_text('{"path": "imgs/a.png", "caption": "ok"}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad.jsonl.*line 2"):
        load_captioned_pairs(bad)
    nocol = caption_images / "nocol.csv"
    nocol.write_text("foo,bar\nimgs/a.png,x\n")
    with pytest.raises(ValueError, match="nocol.csv"):
        load_captioned_pairs(nocol)
    gone = caption_images / "gone.csv"
    gone.write_text("path,caption\nimgs/zzz.png,x\n")
    with pytest.raises(FileNotFoundError, match="zzz.png"):
        load_captioned_pairs(gone)
    assert load_captioned_pairs(gone, check_files=False).captions == ["x"]
    latin = caption_images / "latin.csv"
    latin.write_bytes("path,caption\nimgs/a.png,caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.csv' is not UTF-8 text .*b'\\xe9'"):
        load_captioned_pairs(latin, check_files=False)
    with pytest.raises(FileNotFoundError, match="is a folder, not a file"):
        load_captioned_pairs(caption_images)


# --------------------------------------------------------------------------- unreadable files


def _messy_folder(root):
    """Two classes of real PNGs, plus a truncated JPEG, a zero-byte file and text named .jpg."""
    for i in range(3):
        _png(root / "cat" / f"c{i}.png", value=10 * i)
        _png(root / "dog" / f"d{i}.png", value=100 + 10 * i)
    jpeg = root / "cat" / "truncated.jpg"
    Image.fromarray(np.full((64, 64, 3), 7, dtype=np.uint8)).save(jpeg, quality=90)
    jpeg.write_bytes(jpeg.read_bytes()[:200])
    (root / "dog" / "empty.png").write_bytes(b"")
    (root / "dog" / "notes.jpg").write_text("this is not an image")
    return root


def test_image_folder_skip_drops_unreadable_files_with_their_labels(tmp_path):
    from skvlm.encoders import UnreadableImageWarning

    root = _messy_folder(tmp_path / "messy")
    assert len(load_image_folder(root).paths) == 9  # listing alone opens nothing
    with pytest.warns(UnreadableImageWarning) as record:
        data = load_image_folder(root, on_error="skip")
    assert len(record) == 1
    message = str(record[0].message)
    assert "3 of the 9 images" in message
    for name in ("truncated.jpg", "empty.png", "notes.jpg"):
        assert name in message
    assert "the file is empty (0 bytes)" in message and "BytesIO" not in message
    names = [os.path.basename(p) for p in data.paths]
    assert names == ["c0.png", "c1.png", "c2.png", "d0.png", "d1.png", "d2.png"]
    assert data.labels.tolist() == ["cat"] * 3 + ["dog"] * 3
    assert data.target.tolist() == [0, 0, 0, 1, 1, 1]
    assert sorted(os.path.basename(p) for p in data.unreadable) == [
        "empty.png",
        "notes.jpg",
        "truncated.jpg",
    ]
    with pytest.warns(UnreadableImageWarning):
        paths, labels = load_image_folder(root, on_error="skip", return_X_y=True)
    assert [os.path.basename(p) for p in paths] == names and len(labels) == 6


def test_image_folder_raise_names_the_files_and_suggests_skip(tmp_path):
    from skvlm.encoders import UnreadableImageError

    root = _messy_folder(tmp_path / "messy")
    with pytest.raises(UnreadableImageError, match="on_error='skip'") as info:
        load_image_folder(root, on_error="raise")
    assert "truncated.jpg" in str(info.value) and "empty.png" in str(info.value)
    clean = tmp_path / "clean"
    _png(clean / "a" / "1.png")
    assert len(load_image_folder(clean, on_error="raise").paths) == 1
    with pytest.raises(ValueError, match="on_error must be"):
        load_image_folder(clean, on_error="ignore")


def test_decoding_is_cached_by_content(tmp_path, monkeypatch):
    import skvlm._images
    from skvlm.datasets import _files

    root = tmp_path / "dupes"
    for i in range(4):  # four files, two distinct contents
        _png(root / "a" / f"{i}.png", value=i % 2)
    decoded = []
    real = skvlm._images.load_rgb
    monkeypatch.setattr(_files, "_DECODED", {})
    monkeypatch.setattr(
        skvlm._images, "load_rgb", lambda path, **kw: decoded.append(path) or real(path, **kw)
    )
    load_image_folder(root, on_error="skip", n_jobs=1)
    assert len(decoded) == 2
    load_image_folder(root, on_error="skip", n_jobs=2)  # a second listing decodes nothing
    assert len(decoded) == 2
    _png(root / "a" / "0.png", value=9)  # rewritten: new bytes, decoded again
    load_image_folder(root, on_error="skip")
    assert len(decoded) == 3


def test_coop_split_skip_filters_every_subset_once(tmp_path):
    from skvlm.encoders import UnreadableImageWarning

    dataset_dir = _coop_tree(tmp_path)
    image_dir = dataset_dir / COOP_DATASETS["Caltech101"]["image_dir"]
    (image_dir / "airplanes" / "train_0.png").write_bytes(b"")
    (image_dir / "Faces_easy" / "test_1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert len(load_coop_split(tmp_path, "Caltech101").train.paths) == 6
    with pytest.warns(UnreadableImageWarning) as record:
        data = load_coop_split(tmp_path, "Caltech101", on_error="skip")
    assert len(record) == 1 and "2 of the 12 images" in str(record[0].message)
    assert [len(data[s].paths) for s in ("train", "val", "test")] == [5, 2, 3]
    assert data.train.target.tolist() == [0, 0, 0, 1, 1]
    assert data.test.labels.tolist() == ["Faces easy", "airplanes", "airplanes"]
    assert all("train_0.png" not in p or "Faces" in p for p in data.train.paths)
    assert len(data.unreadable) == 2


def test_readme_headline_pipeline_on_a_messy_folder_scores_without_nan(tmp_path, tiny_images):
    """README "In one screen", offline (skvlm-tiny), on a folder with two broken files."""
    import warnings

    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline

    from skvlm import ClassSubspaceProjector, CLIPEncoder, NearestPrototype
    from skvlm.encoders import UnreadableImageWarning
    from skvlm.model_selection import FewShotSplit

    images, colours = tiny_images
    root = tmp_path / "my_images"
    for i, (image, colour) in enumerate(zip(images, colours)):
        (root / colour).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / colour / f"{i:02d}.png")
    (root / "red" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "green" / "empty.png").write_bytes(b"")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths, labels = load_image_folder(root, return_X_y=True, on_error="skip")
        enc = CLIPEncoder(model="skvlm-tiny", cache=tmp_path / "cache")
        proj = ClassSubspaceProjector(class_names="labels", encoder=enc)
        pipe = Pipeline([("enc", enc), ("proj", proj), ("clf", NearestPrototype())])
        search = GridSearchCV(
            pipe,
            {"proj": ["passthrough", proj]},
            cv=FewShotSplit(n_shots=4, n_splits=3, random_state=0),
        )
        search.fit(paths, labels)
    unreadable = [w for w in caught if issubclass(w.category, UnreadableImageWarning)]
    assert len(unreadable) == 1, [str(w.message) for w in caught]
    assert "corrupt.jpg" in str(unreadable[0].message)
    assert "empty.png" in str(unreadable[0].message)
    assert len(paths) == len(labels) == 24
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all() and (scores > 1 / 3).all(), scores
