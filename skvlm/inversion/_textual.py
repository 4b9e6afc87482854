"""OTI: pseudo-word token embeddings spliced into the text tower at a template's ``{}``.

The pseudo tokens are injected by a forward hook on the token embedding, so the
positional embedding, the attention mask, end-of-text pooling, layer norms and
projection are the model's own code. For open_clip's ``CLIP`` (causal text mask,
end-of-text pooling) the text tower instead runs on the positions up to the
end-of-text token only (``models.encode_text_prefix``), which gives the same
features several times faster (the tests check both against ``encode_text``).
"""

import numbers

from .._sklearn import Interval
from ..models import encode_text_prefix, pooled_position, replace_output, token_embedding
from ._base import _BaseInverter


class _TextInjector:
    """Feeds pseudo-word embeddings into the text tower at the template's placeholder.

    For open_clip's ``CLIP`` with a causal text mask and end-of-text pooling, the
    positions after the pooled token cannot influence it, so the sequence is cut
    right after it: "a photo of *" runs on 6 positions instead of 77 (ViT-B-32) or
    24 (skvlm-tiny), with the same result. Other text towers run in full, through
    their own ``encode_text``, with the pseudo tokens injected by a forward hook.
    """

    def __init__(self, loaded, template, n_tokens, truncate=True):
        model = loaded.model
        self.loaded = loaded
        self.embedding = token_embedding(model, loaded.name)
        self.token_width = int(self.embedding.weight.shape[1])
        self.row, self.start = _template_tokens(loaded.tokenizer, template, n_tokens)
        self.n_tokens = self.n_pseudo = n_tokens
        pooled = pooled_position(model, self.row) if truncate else None
        self.length = None if pooled is None else pooled + 1
        if self.length is not None:
            self.row = self.row[: self.length]

    def marker(self, n_rows):
        row = self.row.to(self.loaded.device)
        return row.expand(n_rows, row.shape[0]).clone()

    def _splice(self, embedded, tokens):
        import torch

        start, stop = self.start, self.start + self.n_tokens
        pseudo = tokens.to(embedded.dtype)
        return torch.cat([embedded[:, :start], pseudo, embedded[:, stop:]], dim=1)

    def forward(self, marker, tokens):
        model = self.loaded.model
        if self.length is None:
            with replace_output(self.embedding, marker, lambda out: self._splice(out, tokens)):
                return model.encode_text(marker)
        return encode_text_prefix(model, marker, self._splice(self.embedding(marker), tokens))


def _body_ids(tokenizer, text):
    """Token ids of ``text`` between start- and end-of-text (open_clip's layout)."""
    row = tokenizer([text])[0]
    eot = tokenizer([""])[0][1]
    end = int((row == eot).nonzero()[0, 0])
    return row[1:end]


def _template_tokens(tokenizer, template, n_tokens):
    """Token row of ``template`` with ``n_tokens`` placeholders, and where they start.

    The prefix and suffix around ``{}`` are tokenised separately: CLIP's BPE splits
    words at spaces and punctuation, so the pieces are those of the full sentence,
    and no placeholder character has to exist in the vocabulary (the compact
    vocabulary of the tiny models has none). The placeholder rows hold the
    start-of-text id: their embeddings are replaced, so any id below end-of-text
    (which argmax pooling looks for) would do, and tokenising a dummy word would
    make the tiny models warn about a word the user never wrote.
    """
    import torch

    if not isinstance(template, str) or template.count("{}") != 1:
        raise ValueError(
            f"template must be a string with exactly one '{{}}' placeholder, got {template!r}."
        )
    empty = tokenizer([""])[0]
    sot, eot, pad = empty[0], empty[1], empty[-1]
    prefix, suffix = template.split("{}")
    ids = torch.cat(
        [
            sot[None],
            _body_ids(tokenizer, prefix),
            sot.repeat(n_tokens),
            _body_ids(tokenizer, suffix),
            eot[None],
        ]
    )
    if ids.shape[0] > empty.shape[0]:
        raise ValueError(
            f"template {template!r} with {n_tokens} pseudo tokens needs {ids.shape[0]} "
            f"tokens; the text tower's context length is {empty.shape[0]}."
        )
    row = torch.full_like(empty, int(pad))
    row[: ids.shape[0]] = ids
    return row, 1 + _body_ids(tokenizer, prefix).shape[0]


class TextualInverter(_BaseInverter):
    """Optimization-based Textual Inversion (OTI): image embeddings to text features.

    For each image embedding, ``n_tokens`` pseudo-word token embeddings are placed
    at the ``{}`` of ``template`` and optimised with AdamW so that the text tower's
    feature of the sentence has maximal cosine similarity with the image
    embedding (loss 1 - cos, summed over rows). ``transform`` returns those text
    features. The model is frozen; rows are optimised together, ``batch_size`` at a
    time, each exactly as if alone.

    The input is not checked to be *image* embeddings: text embeddings of the same
    model have the same width, and inverting them is allowed (if pointless).

    For Cross the Gap's OTI-to-image retrieval, query a gallery of raw image
    embeddings with the inverted features:
    ``Retriever().fit(gallery, labels).score(oti.fit_transform(queries), query_labels)``.
    In a ``Pipeline`` the inverter transforms the gallery too (OTI against OTI).

    Parameters
    ----------
    encoder : CLIPEncoder, str or None, default=None
        The model both towers come from: a ``CLIPEncoder`` (its ``model``,
        ``pretrained``, ``device``, ``precision`` and ``normalize``), a model name
        (default weights), or None for ``CLIPEncoder()``'s default model.
    n_tokens : int, default=1
        Pseudo-word tokens per row.
    template : str, default="a photo of {}"
        Sentence with one ``{}`` where the pseudo tokens go.
    n_steps : int, default=150
        Optimisation steps per batch.
    learning_rate : float, default=0.02
        AdamW's learning rate.
    weight_decay : float, default=0.01
        AdamW's decoupled weight decay.
    batch_size : int, default=64
        Rows optimised together (speed only; results do not depend on it).
    tol : float or None, default=None
        Early stop per row: a row stops once its loss has not improved by more
        than ``tol`` for 10 consecutive steps. None runs all ``n_steps``.
    random_state : int, RandomState or None, default=None
        Seeds the initial tokens, N(0, 0.02^2), shared by all rows.
    verbose : int, default=0
        Progress bar over the optimisation steps of all batches.

    Attributes
    ----------
    n_features_in_ : int
        Width of the embeddings seen in ``fit``.
    loss_curve_ : ndarray of shape (n_iter_,)
        Mean loss over rows at each step of the last ``fit_transform``.
    n_iter_ : int
        Steps run by the last ``fit_transform``.

    References
    ----------
    Mistretta, Baldrati, Agnolucci, Bertini, Bagdanov. "Cross the Gap: Exposing
    the Intra-modal Misalignment in CLIP via Modality Inversion". ICLR 2025, Sec. 3.

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm import CLIPEncoder
    >>> encoder = CLIPEncoder("skvlm-tiny", pretrained=None, device="cpu")
    >>> images = encoder.transform(np.zeros((2, 32, 32, 3), dtype=np.uint8))
    >>> oti = TextualInverter(encoder, n_steps=20, random_state=0)
    >>> text_features = oti.fit_transform(images)
    >>> text_features.shape, text_features.dtype
    ((2, 64), dtype('float32'))
    >>> bool(oti.loss_curve_[-1] < oti.loss_curve_[0])
    True
    """

    _parameter_constraints = {
        **_BaseInverter._parameter_constraints,
        "n_tokens": [Interval(numbers.Integral, 1, None, closed="left")],
        "template": [str],
    }

    def __init__(
        self,
        encoder=None,
        *,
        n_tokens=1,
        template="a photo of {}",
        n_steps=150,
        learning_rate=0.02,
        weight_decay=0.01,
        batch_size=64,
        tol=None,
        random_state=None,
        verbose=0,
    ):
        self.encoder = encoder
        self.n_tokens = n_tokens
        self.template = template
        self.n_steps = n_steps
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose

    def _check_model(self, loaded):
        if loaded.tokenizer is None:
            raise ValueError(
                f"TextualInverter needs a model with a text tower; {loaded.name} has none."
            )
        token_embedding(loaded.model, loaded.name)
        _template_tokens(loaded.tokenizer, self.template, self.n_tokens)

    def _injector(self, loaded):
        return _TextInjector(loaded, self.template, self.n_tokens)
