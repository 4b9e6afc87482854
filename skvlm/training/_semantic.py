"""Semantic distances between captions, for the IMSep loss.

AlignCLIP (seed 004, Eq. 8) rescales image–image similarities by ``D = 1 - S``,
``S`` the cosine similarity of the captions under a pretrained sentence encoder
(SBERT all-mpnet-base-v2). Offline, with no such model, skvlm's default is a
caption-based distance: the Jaccard distance between the sets of *content words*
of two captions (function words and the photo-template words of CLIP's prompts
removed). On :func:`skvlm.datasets.make_scenes` captions the content words are
exactly the factor values a caption mentions, so two captions are at distance 0
when they describe the same factors and at 1 when they share none.
"""

import re

import numpy as np

# Function words plus the wording of CLIP's prompt templates (Radford et al., 2021):
# words that say how a picture was taken, not what it shows.
STOP_WORDS = frozenset(
    """
    a an the of and or with without to in on at is are there this that it its my one
    some many be shown behind photo photograph picture image images drawing painting
    sketch doodle rendering rendition sculpture tattoo graffiti art cartoon toy plastic
    plushie origami embroidered itap video game jpeg corrupted pixelated blurry
    cropped close up low resolution bad good nice weird cool clean dirty hard see
    object shape thing background corner
    """.split()
)

_WORD = re.compile(r"[a-z0-9]+")


def _content_words(caption, stop_words):
    return frozenset(_WORD.findall(caption.lower())) - stop_words


def caption_distance(captions, stop_words=STOP_WORDS):
    """Jaccard distance between the content-word sets of captions.

    ``D_ij = 1 - |W_i ∩ W_j| / |W_i ∪ W_j|``, with ``W_i`` the lower-cased words
    of caption i minus ``stop_words``; two captions with no content word at all are
    at distance 0. The diagonal is 0, as the IMSep loss needs.

    Parameters
    ----------
    captions : list of str
    stop_words : set of str, default=STOP_WORDS
        Words ignored (function words and photo-template words).

    Returns
    -------
    ndarray of shape (n, n), float32, symmetric, values in [0, 1].

    Examples
    --------
    >>> caption_distance(["a photo of a red circle.", "a red square.", "a red circle"]).round(3)
    array([[0.   , 0.667, 0.   ],
           [0.667, 0.   , 0.667],
           [0.   , 0.667, 0.   ]], dtype=float32)
    """
    stop_words = frozenset(stop_words)
    word_sets = [_content_words(caption, stop_words) for caption in captions]
    vocabulary = {word: i for i, word in enumerate(sorted(set().union(*word_sets)))}
    if not vocabulary:
        return np.zeros((len(captions), len(captions)), dtype=np.float32)
    indicator = np.zeros((len(captions), len(vocabulary)), dtype=np.float32)
    for row, words in enumerate(word_sets):
        indicator[row, [vocabulary[w] for w in words]] = 1.0
    intersection = indicator @ indicator.T
    sizes = indicator.sum(axis=1)
    union = sizes[:, None] + sizes[None, :] - intersection
    similarity = np.divide(intersection, union, out=np.ones_like(intersection), where=union > 0)
    distance = 1.0 - similarity
    np.fill_diagonal(distance, 0.0)
    return distance.astype(np.float32)


class SentenceEncoderDistance:
    """Cosine distance ``1 - cos`` between captions under a sentence encoder.

    The distance AlignCLIP uses (seed 004, Eq. 8), from a
    ``sentence_transformers`` model (the ``text`` extra). Embeddings are computed
    once per distinct caption and memoised.

    Parameters
    ----------
    model : str or SentenceTransformer, default="all-mpnet-base-v2"
        The encoder (seed 004 uses SBERT all-mpnet-base-v2).
    device : str or None
        Passed to ``SentenceTransformer``.
    """

    def __init__(self, model="all-mpnet-base-v2", device=None):
        self.model = model
        self.device = device
        self._encoder = None
        self._memo = {}

    def _load(self):
        if self._encoder is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ImportError(
                    "SentenceEncoderDistance needs sentence-transformers: pip install "
                    "'skvlm[text]', or use the offline default caption_distance."
                ) from exc
            self._encoder = (
                SentenceTransformer(self.model, device=self.device)
                if isinstance(self.model, str)
                else self.model
            )
        return self._encoder

    def __call__(self, captions):
        missing = [c for c in dict.fromkeys(captions) if c not in self._memo]
        if missing:
            vectors = np.asarray(self._load().encode(missing), dtype=np.float32)
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            self._memo.update(zip(missing, vectors))
        embeddings = np.stack([self._memo[c] for c in captions])
        distance = 1.0 - embeddings @ embeddings.T
        np.fill_diagonal(distance, 0.0)
        return distance.astype(np.float32)


def offline_sentence_distance(model="all-mpnet-base-v2"):
    """A :class:`SentenceEncoderDistance` whose weights load without the network, or None.

    None when sentence-transformers is not installed or the model is not in the
    local Hugging Face cache.
    """
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    try:
        encoder = SentenceTransformer(model, local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure to load offline means "not available"
        return None
    return SentenceEncoderDistance(encoder)


def resolve_semantic_distance(semantic_distance):
    """The caption distance callable for a ``semantic_distance`` setting.

    ``"jaccard"`` → :func:`caption_distance`; ``"attributes"`` → the scene
    world's graded :func:`~skvlm.datasets.attribute_distance`; ``"sentence"`` →
    SBERT; ``"auto"`` → SBERT when it loads offline, else ``"attributes"``;
    callables pass unchanged.
    """
    if callable(semantic_distance):
        return semantic_distance
    if semantic_distance == "jaccard":
        return caption_distance
    if semantic_distance == "attributes":
        from ..datasets import attribute_distance

        return attribute_distance
    if semantic_distance == "sentence":
        return SentenceEncoderDistance()
    if semantic_distance == "auto":
        return offline_sentence_distance() or resolve_semantic_distance("attributes")
    raise ValueError(
        f"semantic_distance must be 'jaccard', 'attributes', 'sentence', 'auto' or a "
        f"callable mapping a list of captions to an (n, n) array, got {semantic_distance!r}."
    )
