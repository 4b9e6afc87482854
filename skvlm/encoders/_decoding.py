"""Image decoding for the encoders: a pool of threads, one batch ahead of the model."""

import os
from numbers import Integral

from .._embedding_cache import content_hash
from .._images import UnreadableImageError, load_rgb
from ._inputs import _FILE_PREFIX, _describe, _image_bytes


def _resized_side(preprocess):
    """The length a shortest-side ``Resize`` step scales images to, else None.

    Only that kind of resize can blow a thin strip up to gigapixels; a resize to a
    fixed (height, width), or one with ``max_size``, cannot.
    """
    for step in getattr(preprocess, "transforms", []):
        if type(step).__name__ == "Resize" and getattr(step, "max_size", None) is None:
            size = step.size
            if isinstance(size, Integral):
                return int(size)
            if isinstance(size, (list, tuple)) and len(size) == 1:
                return int(size[0])
            return None
    return None


def _available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _decode_workers(n_jobs, device):
    """Decoding threads for ``n_jobs`` (1 = decode in the calling thread, no pool).

    None keeps the model fed: up to 8 threads beside a GPU, up to 4 on the CPU (whose
    cores the model itself uses), never more than the cores; -1 is every core and
    -k all but k - 1, as in scikit-learn.
    """
    if n_jobs == 0:
        raise ValueError(
            "n_jobs=0 decodes with no thread at all; use 1 (the calling thread), "
            "k > 1 threads, -1 (every core) or None (enough to keep the model busy)."
        )
    cores = _available_cores()
    if n_jobs is None:
        return min(cores, 8 if device.type == "cuda" else 4)
    if n_jobs < 0:
        return max(1, cores + 1 + n_jobs)
    return n_jobs


class _ItemDecoder:
    """Decodes (and preprocesses) one image by position; safe to call from threads."""

    def __init__(self, items, loaded, preprocess, spec, keys):
        self.items, self.preprocess, self.spec, self.keys = items, preprocess, spec, keys
        self.side = _resized_side(loaded.preprocess)

    def __call__(self, index):
        """(index, (image or pixels, changed)) or (index, the error naming the item)."""
        item, content, changed = self.items[index], None, False
        try:
            if self.spec is not None and isinstance(item, (str, os.PathLike)):
                identity = _image_bytes(item, index)
                changed = content_hash(self.spec, "image", identity) != self.keys[index]
                content = identity[len(_FILE_PREFIX) :]
            name = _describe(item, index)
            image = load_rgb(item, name=name, resized_side=self.side, content=content)
        except (OSError, UnreadableImageError) as exc:
            return index, exc
        return index, (image if self.preprocess is None else self.preprocess(image), changed)


def _decode_batches(decode, batches, n_workers):
    """Yield (chunk, [decode(i) for i in chunk]) in order, one batch decoded ahead.

    With more than one worker, a thread pool decodes batch i + 1 while the caller
    runs the model on batch i (Pillow releases the GIL while it decodes and resizes);
    the results are the serial ones, in the same order.
    """
    if n_workers <= 1:
        for chunk in batches:
            yield chunk, [decode(index) for index in chunk]
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="skvlm-decode")
    try:
        pending = None
        for chunk in batches:
            submitted = (chunk, [pool.submit(decode, index) for index in chunk])
            if pending is not None:
                yield pending[0], [future.result() for future in pending[1]]
            pending = submitted
        if pending is not None:
            yield pending[0], [future.result() for future in pending[1]]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
