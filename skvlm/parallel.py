"""Scale-out on Dask: batch encoding over workers, and sweeps under joblib's Dask backend.

skvlm runs no scheduler of its own. Two recipes cover the expensive parts of a
study, both on :mod:`dask.distributed` (``pip install 'skvlm[dask]'``):

**Encoding a large image list.** :func:`encode` cuts the items into partitions and
runs ``encoder.transform`` on each partition on a Dask worker. The encoder travels
without its weights (its pickle holds only its parameters); each worker process
loads the model on its first partition into skvlm's process-wide model cache and
reuses it for every later partition and call. The rows come back in input order.

**Hyper-parameter sweeps.** ``GridSearchCV`` and friends parallelise through
joblib, and joblib has a Dask backend: with a ``distributed.Client`` open, ::

    import joblib
    from distributed import Client

    client = Client("tcp://scheduler:8786")      # or LocalCluster() on one machine
    search = GridSearchCV(pipe, grid, cv=FewShotSplit(n_shots=4, random_state=0),
                          n_jobs=-1)
    with joblib.parallel_backend("dask"):
        search.fit(embeddings, labels)

runs the (candidate, split) fits on the cluster's workers. Sweep over embeddings
(encode once, with :func:`encode` or a cached encoder, then search the downstream
steps), so that the workers do not each encode the images again; a pipeline that
starts with an encoder also works, and with ``cache=`` set to a shared folder the
workers share one on-disk embedding cache.

Results equal those of a single-process run: the same estimator code runs on the
same rows, only in another process. :func:`encode`'s default partitions hold whole
encoder batches, so every batch is the one a single-process ``transform`` would
run and the embeddings are the very same float32 rows; a ``partition_size`` that
is not a multiple of ``batch_size`` regroups rows into other batches, which can
change the last bit of float32 results (about 1e-7), never a metric.
"""

import math
import warnings
from numbers import Integral

import numpy as np

__all__ = ["encode"]

_METHODS = ("transform", "encode_images", "encode_text")


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            "skvlm.parallel needs dask.distributed: pip install 'skvlm[dask]'."
        ) from exc
    return distributed


def _default_client():
    """The current Dask client, or None when there is none (or no Dask)."""
    try:
        import distributed
    except ImportError:
        return None
    try:
        return distributed.get_client()
    except ValueError:
        return None


def _encode_partition(encoder, method, items, with_indices=False):
    """Run on a worker: the worker's model cache makes the model load once per process."""
    if with_indices:
        embeddings, kept = getattr(encoder, method)(items, return_indices=True)
        return np.asarray(embeddings), kept
    return getattr(encoder, method)(items)


def _partition_bounds(n_items, encoder, client, partition_size):
    """(start, stop) of each partition; None sizes them by :func:`_default_partition_size`."""
    if partition_size is None:
        n_workers = len(client.scheduler_info()["workers"]) if client is not None else 1
        batch_size = getattr(encoder, "batch_size", 64) or 64
        partition_size = _default_partition_size(n_items, int(batch_size), n_workers)
    return [
        (start, min(start + partition_size, n_items)) for start in range(0, n_items, partition_size)
    ]


def _default_partition_size(n_items, batch_size, n_workers):
    """About four partitions per worker, each a whole number of encoder batches."""
    per_partition = math.ceil(n_items / max(1, 4 * n_workers))
    return max(batch_size, math.ceil(per_partition / batch_size) * batch_size)


def encode(
    items,
    encoder,
    *,
    client=None,
    partition_size=None,
    method="transform",
    return_indices=False,
    verbose=0,
):
    """Encode ``items`` with ``encoder``, partitions spread over Dask workers.

    Parameters
    ----------
    items : sequence
        What ``encoder`` takes: image paths (the workers must see the same files),
        PIL images, uint8 arrays, or texts.
    encoder : CLIPEncoder, ImageEncoder or any transformer
        Sent to the workers without its weights; each worker process loads the
        model once, from skvlm's process-wide model cache, and keeps it for later
        partitions and later calls.
    client : distributed.Client or None, default=None
        None uses the current client (``distributed.get_client()``); without one,
        the partitions run here, one after the other.
    partition_size : int or None, default=None
        Items per task. None: about four tasks per worker, rounded up to a multiple
        of ``encoder.batch_size`` so that the batches are those of a
        single-process run.
    method : {"transform", "encode_images", "encode_text"}, default="transform"
        The encoder method each partition calls.
    return_indices : bool, default=False
        Also return the positions in ``items`` of the rows returned. With an encoder
        whose ``on_error="skip"``, unreadable images have no row; the positions keep
        labels aligned (``y[kept]``).
    verbose : int, default=0
        Show a progress bar over finished partitions.

    Returns
    -------
    embeddings : ndarray of shape (n_kept, n_features)
        Rows in the order of ``items`` (all of them unless the encoder skipped some,
        which a warning here reports, whichever worker the skipping happened on).
    kept_indices : ndarray of shape (n_kept,), int
        Only with ``return_indices=True``.

    Raises
    ------
    ValueError
        ``items`` is empty, or a bad ``partition_size`` / ``method``.
    Exception
        What the encoder raised on a worker (e.g. the ``FileNotFoundError`` naming a
        missing image), re-raised here.

    Examples
    --------
    Without a Dask client the partitions run in this process (the same result):

    >>> import numpy as np
    >>> from skvlm import CLIPEncoder
    >>> from skvlm.parallel import encode
    >>> encoder = CLIPEncoder("skvlm-tiny", pretrained=None, device="cpu", batch_size=4)
    >>> images = np.zeros((10, 32, 32, 3), dtype=np.uint8)
    >>> encode(images, encoder, partition_size=4).shape
    (10, 64)

    On a cluster, with each worker loading the model once::

        from distributed import Client, LocalCluster
        with LocalCluster(n_workers=4, threads_per_worker=1) as cluster, Client(cluster) as client:
            X = encode(image_paths, CLIPEncoder("ViT-B-32"), client=client)
    """
    _check_options(method, partition_size)
    items = _as_sequence(items)
    client = _default_client() if client is None else client
    bounds = _partition_bounds(len(items), encoder, client, partition_size)
    with_indices = _tracks_positions(encoder, method)
    parts = [items[start:stop] for start, stop in bounds]
    outputs = _run_partitions(client, encoder, method, parts, with_indices, verbose)
    embeddings, kept = _assemble(outputs, bounds, len(items), with_indices)
    return (embeddings, kept) if return_indices else embeddings


def _check_options(method, partition_size):
    if method not in _METHODS:
        raise ValueError(f"method must be one of {list(_METHODS)}, got {method!r}.")
    if partition_size is not None and (
        not isinstance(partition_size, Integral)
        or isinstance(partition_size, bool)
        or partition_size < 1
    ):
        raise ValueError(f"partition_size must be a positive int or None, got {partition_size!r}.")


def _as_sequence(items):
    """``items`` as a list or an array (sliceable by position); a string or nothing is refused."""
    if isinstance(items, (str, bytes)):
        raise ValueError("items must be a sequence of images or texts, not a single string.")
    if hasattr(items, "iloc"):  # pandas: slice by position
        items = items.to_numpy()
    if not isinstance(items, (list, np.ndarray)):
        items = list(items)
    if len(items) == 0:
        raise ValueError("items is empty: there is nothing to encode.")
    return items


def _tracks_positions(encoder, method):
    """Whether partitions report which rows they kept: whenever rows may be dropped.

    So a skipped image can never shift the rows of the partitions after it unnoticed.
    """
    return method != "encode_text" and getattr(encoder, "on_error", "raise") == "skip"


def _run_partitions(client, encoder, method, parts, with_indices, verbose):
    """Each partition's output, in order: on the cluster, or here without a client."""
    if client is not None:
        return _run_on_cluster(client, encoder, method, parts, with_indices, verbose)
    return [
        _encode_partition(encoder, method, part, with_indices) for part in _progress(parts, verbose)
    ]


def _assemble(outputs, bounds, n_items, with_indices):
    """The rows of all partitions in input order, and their positions in ``items``.

    Warns (for the caller of :func:`encode`) when the encoder skipped some rows.
    """
    if not with_indices:
        return np.concatenate([np.asarray(out) for out in outputs], axis=0), np.arange(n_items)
    embeddings = np.concatenate([out for out, _ in outputs], axis=0)
    kept = np.concatenate([idx + start for (_, idx), (start, _) in zip(outputs, bounds)])
    if len(kept) < n_items:
        from .encoders import UnreadableImageWarning

        dropped = np.setdiff1d(np.arange(n_items), kept)
        warnings.warn(
            f"skvlm.parallel.encode: {len(dropped)} of {n_items} images were unreadable "
            f"and skipped (positions {dropped[:20].tolist()}"
            f"{'...' if len(dropped) > 20 else ''}; each worker's warning names the "
            "files). Use return_indices=True to keep labels aligned.",
            UnreadableImageWarning,
            stacklevel=3,
        )
    return embeddings, kept


def _run_on_cluster(client, encoder, method, parts, with_indices, verbose):
    # One copy of the (weightless) encoder per worker instead of one per task.
    [shared] = client.scatter([encoder], broadcast=True, hash=False)
    futures = client.map(
        _encode_partition,
        [shared] * len(parts),
        [method] * len(parts),
        parts,
        [with_indices] * len(parts),
        pure=False,
    )
    try:
        if verbose:
            distributed = _import_distributed()
            for _ in _progress(distributed.as_completed(futures), verbose, total=len(futures)):
                pass
        return client.gather(futures)
    finally:
        client.cancel(futures + [shared])


def _progress(iterable, verbose, total=None):
    if not verbose:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc="skvlm.parallel.encode", unit="partition")
