"""skvlm.parallel on a loopback LocalCluster: Dask results equal the sequential ones."""

import numpy as np
import pytest
from PIL import Image

distributed = pytest.importorskip("distributed")
joblib = pytest.importorskip("joblib")

from skvlm.parallel import _default_partition_size, encode  # noqa: E402

MODEL = {"model": "skvlm-tiny", "pretrained": None, "device": "cpu", "batch_size": 8}


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
    )
    with cluster, distributed.Client(cluster) as dask_client:
        yield dask_client


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(40):
        path = folder / f"{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _encoder(**params):
    from skvlm import CLIPEncoder

    return CLIPEncoder(**{**MODEL, **params})


def test_encode_on_cluster_equals_single_process(client, image_paths):
    encoder = _encoder()
    expected = encoder.transform(image_paths)
    with distributed.get_task_stream(client) as tasks:
        got = encode(image_paths, encoder, client=client, partition_size=16)
    assert len({t["worker"] for t in tasks.data}) >= 1 and len(tasks.data) >= 3
    assert got.shape == expected.shape == (40, 64)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=0)
    # Rows stay in input order even though partitions finish in any order.
    np.testing.assert_allclose(
        encode(image_paths[::-1], encoder, client=client, partition_size=8),
        expected[::-1],
        rtol=0,
        atol=0,
    )


def test_encode_texts_on_cluster(client):
    encoder = _encoder(modality="text")
    texts = [f"a photo of a {c} circle" for c in ("red", "blue", "green")] * 5
    expected = encoder.encode_text(texts)
    # A partition is a different batch than the single-process call's, and BLAS may
    # round a row differently in another batch shape: equal up to float32 rounding.
    got = encode(texts, encoder, client=client, partition_size=8, method="encode_text")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    # Other partition sizes change which rows share a batch: equal up to float32 rounding.
    got = encode(texts, encoder, client=client, partition_size=3, method="encode_text")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_each_worker_loads_the_model_once(client, image_paths):
    from skvlm.models import cached_models, load_model

    encode(image_paths, _encoder(), client=client, partition_size=4)

    def model_identity():
        return id(load_model(**{k: MODEL[k] for k in ("model", "pretrained", "device")})), len(
            cached_models()
        )

    before = client.run(model_identity)
    encode(image_paths, _encoder(), client=client, partition_size=4)
    after = client.run(model_identity)
    assert len(before) == 2
    assert before == after  # same model object on each worker: nothing was reloaded
    assert all(count == 1 for _, count in after.values())


def test_encode_uses_default_client_and_runs_locally_without_one(client, image_paths):
    encoder = _encoder()
    expected = encoder.transform(image_paths[:10])
    np.testing.assert_allclose(encode(image_paths[:10], encoder), expected, rtol=0, atol=0)


def test_worker_error_is_reraised_with_the_file_name(client, image_paths):
    bad = image_paths[:3] + ["/nonexistent/missing_image.png"]
    with pytest.raises(FileNotFoundError, match="missing_image.png"):
        encode(bad, _encoder(modality="image"), client=client, partition_size=2)


@pytest.mark.parametrize("on_cluster", [True, False])
def test_skipped_images_keep_their_positions_across_partitions(
    client, image_paths, tmp_path, on_cluster
):
    from skvlm.encoders import UnreadableImageWarning

    damaged = tmp_path / "damaged.png"
    damaged.write_bytes(open(image_paths[0], "rb").read()[:40])
    items = image_paths[:5] + [str(damaged)] + image_paths[5:9] + ["/nonexistent/gone.png"]
    encoder = _encoder(on_error="skip")
    with pytest.warns(UnreadableImageWarning, match=r"2 of 11 images.*\[5, 10\]"):
        got, kept = encode(
            items,
            encoder,
            client=client if on_cluster else None,
            partition_size=4,
            return_indices=True,
        )
    assert kept.tolist() == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    # (atol: a dropped image changes its batch's size, hence float rounding, not rows)
    np.testing.assert_allclose(got, _encoder().transform(image_paths[:9]), atol=1e-6)


def test_encode_argument_errors():
    with pytest.raises(ValueError, match="empty"):
        encode([], _encoder(), client=None)
    with pytest.raises(ValueError, match="partition_size"):
        encode(["a"], _encoder(), partition_size=0)
    with pytest.raises(ValueError, match="method"):
        encode(["a"], _encoder(), method="fit")


def test_default_partition_size_is_whole_batches():
    assert _default_partition_size(1000, 64, 2) == 128
    assert _default_partition_size(10, 64, 2) == 64
    assert _default_partition_size(1000, 1, 4) == 63


def test_grid_search_under_joblib_dask_backend_equals_sequential(client):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 16))
    y = np.repeat(np.arange(3), 20)
    X = (centers[y] + rng.normal(scale=1.5, size=(60, 16))).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)

    def search():
        return GridSearchCV(
            LogisticRegression(max_iter=200),
            {"C": [0.01, 0.1, 1.0, 10.0]},
            cv=StratifiedKFold(3, shuffle=True, random_state=0),
            n_jobs=2,
        )

    sequential = search().fit(X, y)
    with distributed.get_task_stream(client) as tasks, joblib.parallel_backend("dask"):
        on_dask = search().fit(X, y)
    assert len(tasks.data) > 0  # the fits did run on the cluster
    assert on_dask.best_params_ == sequential.best_params_
    np.testing.assert_array_equal(
        on_dask.cv_results_["mean_test_score"], sequential.cv_results_["mean_test_score"]
    )
    np.testing.assert_array_equal(on_dask.predict_proba(X), sequential.predict_proba(X))
    # The candidates' scores differ, so the equality above is not trivially true.
    assert len(set(sequential.cv_results_["mean_test_score"])) > 1
