"""The headline pipeline of DESIGN.md, inside a sweep, with the embedding cache."""

import numpy as np
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from skvlm import ClassSubspaceProjector, CLIPEncoder, NearestPrototype
from skvlm._embedding_cache import clear_memory_cache
from skvlm.model_selection import FewShotSplit
from skvlm.models import cached_models, clear_model_cache, load_model

TINY = dict(model="skvlm-tiny", pretrained=None, device="cpu")


def _search(cache_dir):
    text_encoder = CLIPEncoder(**TINY, cache=cache_dir)
    pipe = Pipeline(
        [
            ("enc", CLIPEncoder(**TINY, cache=cache_dir)),
            ("proj", ClassSubspaceProjector(encoder=text_encoder, class_names="labels")),
            ("clf", NearestPrototype()),
        ]
    )
    grid = {
        "proj": [
            "passthrough",
            ClassSubspaceProjector(encoder=text_encoder, class_names="labels", n_components=1),
            ClassSubspaceProjector(encoder=text_encoder, class_names="labels", templates=None),
            ClassSubspaceProjector(encoder=text_encoder, templates=None, n_components=8),
        ]
    }
    return GridSearchCV(pipe, grid, cv=FewShotSplit(n_shots=2, n_splits=3, random_state=0))


def test_each_image_is_encoded_once_in_a_sweep_and_then_read_from_disk(
    tmp_path, tiny_images, count_forward
):
    images, labels = tiny_images
    clear_memory_cache()
    counts = count_forward(load_model(**TINY))
    first = _search(tmp_path).fit(images, labels)
    distinct = len(np.unique(images.reshape(len(images), -1), axis=0))
    # 3 folds x 4 candidates + the refit = 13 pipeline fits; each image went through
    # the image tower exactly once.
    assert len(first.cv_results_["params"]) == 4
    assert counts["image"] == distinct == len(images)
    assert counts["text"] > 0

    clear_memory_cache()
    clear_model_cache()
    second = _search(tmp_path).fit(images, labels)
    assert cached_models() == []  # every image and class name came from disk
    np.testing.assert_allclose(
        second.cv_results_["mean_test_score"], first.cv_results_["mean_test_score"]
    )
    np.testing.assert_array_equal(second.predict(images), first.predict(images))


def test_default_headline_pipeline_constructs_with_design_defaults():
    pipe = Pipeline(
        [("enc", CLIPEncoder()), ("proj", ClassSubspaceProjector()), ("clf", NearestPrototype())]
    )
    params = pipe.get_params()
    assert params["enc__model"] == "ViT-B-32" and params["enc__pretrained"] == "default"
    assert params["proj__class_names"] == "imagenet" and params["proj__templates"] == "simple"
    # Nothing was loaded by constructing it.
    assert "_loaded" not in pipe.named_steps["enc"].__dict__
