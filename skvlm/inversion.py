"""Modality inversion: map an embedding into the other tower of a CLIP model.

``TextualInverter`` (OTI) learns, for each image embedding, pseudo-word token
embeddings that make the text tower's feature of a template such as
"a photo of *" match the image; ``VisualInverter`` (OVI) learns, for each text
embedding, pseudo-patch tokens that make the image tower's feature match the text.
Intra-modal tasks (image-image retrieval) can then use the inter-modal geometry
that the contrastive loss trained (Mistretta et al., "Cross the Gap", ICLR 2025).

The towers run as the model runs them: the pseudo tokens are injected by a forward
hook on the token embedding (OTI) or on the patch embedding (OVI), so the
positional embedding, the attention mask, end-of-text pooling, layer norms and
projection are the model's own code. The hook only fires for the tensors this
module passes in, so other users of the shared, cached model are unaffected. For
open_clip's ``CLIP`` (causal text mask, end-of-text pooling) OTI instead runs the
same steps on the positions up to the end-of-text token only, which gives the
same features several times faster (the tests check both against
``encode_text``).

The loss is the *sum* over rows of 1 - cos, not the mean: AdamW is element-wise,
so with a summed loss each row is optimised exactly as if it were alone, whatever
batch it shares (a mean would scale every gradient by 1/batch, which Adam's eps
does not ignore). Every row starts from the same N(0, 0.02^2) draw of
``random_state``, so a row's result depends neither on the other rows nor on its
position. The pseudo tokens and the optimiser state are always fp32; the frozen
towers run in the encoder's precision (half-precision weights under
``precision="auto"`` on CUDA and on CPUs with bf16 units), with no gradient scaler
(a scaler skips whole-batch steps, which would couple the rows). On skvlm-tiny, OTI
through bf16 towers ends within 0.003 (mean over rows; at most 0.026) of the fp32
towers' final cosine per row, well inside the seed-to-seed spread of a row
(sd 0.03); pass an encoder with ``precision="fp32"`` for the exact arithmetic.
"""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from ._math import iter_batches, l2_normalize
from ._sklearn import HasMethods, Interval, StrOptions, _fit_context
from .models import encode_text_prefix, pooled_position, replace_output, token_embedding, vit_tower

__all__ = ["TextualInverter", "VisualInverter"]

_N_ITER_NO_CHANGE = 10
_INIT_STD = 0.02


def _resolve_loaded(encoder):
    """The cached LoadedModel behind ``encoder`` and whether outputs are normalised."""
    from .models import load_model

    if encoder is None:
        from .encoders import CLIPEncoder

        encoder = CLIPEncoder()
    if isinstance(encoder, str):
        return load_model(encoder), True
    loaded = load_model(encoder.model, encoder.pretrained, encoder.device, encoder.precision)
    return loaded, bool(getattr(encoder, "normalize", True))


def _unit_targets(X):
    """The rows of ``X`` as float32 unit vectors: what each inversion must match.

    Only a row's direction matters (the loss is a cosine), so rows are normalised in
    their own precision before the cast: float64 rows beyond float32's range (1e300,
    1e-310) would otherwise become inf or 0 and the inversion NaN or meaningless. An
    all-zero row has no direction to match and is refused.
    """
    unit = l2_normalize(X)
    zero = np.flatnonzero(~unit.any(axis=1))
    if zero.size:
        listed = zero[:10].tolist()
        raise ValueError(
            f"X has {zero.size} all-zero row{'s' if zero.size > 1 else ''} (rows {listed}"
            f"{'...' if zero.size > 10 else ''}): an inversion needs a direction to match; "
            "drop those rows."
        )
    return unit.astype(np.float32)


class _BaseInverter(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """The optimisation loop shared by OTI and OVI; subclasses say what to inject."""

    _parameter_constraints = {
        "encoder": [None, str, HasMethods(["encode_text", "encode_images"])],
        "n_steps": [Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [None, Interval(numbers.Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # ----------------------------------------------------------------- public

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the model and the width of ``X``; the inversion itself runs in ``transform``.

        Parameters
        ----------
        X : array-like of shape (n_samples, embed_dim)
            Embeddings of the source modality. Only each row's direction is used,
            at any magnitude; an all-zero row is a ``ValueError``.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted inverter.
        """
        X = validate_data(self, X, dtype=[np.float32, np.float64])
        _unit_targets(X)
        loaded, _ = _resolve_loaded(self.encoder)
        self._check_model(loaded)
        self._check_width(X, loaded)
        return self

    def transform(self, X):
        """Invert each row of ``X`` into the other tower.

        Parameters
        ----------
        X : array-like of shape (n_samples, embed_dim)
            Embeddings of the source modality. Only each row's direction is used,
            at any magnitude; an all-zero row is a ``ValueError``.

        Returns
        -------
        features : ndarray of shape (n_samples, embed_dim)
            Float32 features of the other tower (L2-normalised when the encoder
            normalises).
        """
        features, _ = self._invert(X)
        return features

    def fit_transform(self, X, y=None):
        """Fit, invert ``X`` and record the loss curve of this inversion.

        Parameters
        ----------
        X : array-like of shape (n_samples, embed_dim)
            Embeddings of the source modality. Only each row's direction is used,
            at any magnitude; an all-zero row is a ``ValueError``.
        y : None
            Ignored.

        Returns
        -------
        features : ndarray of shape (n_samples, embed_dim)
            As :meth:`transform`; sets ``loss_curve_`` and ``n_iter_``.
        """
        self.fit(X)
        features, curve = self._invert(X)
        self.loss_curve_ = curve
        self.n_iter_ = curve.shape[0]
        return features

    @property
    def _n_features_out(self):
        return self.n_features_in_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags

    # ----------------------------------------------------------------- internals

    def _check_width(self, X, loaded):
        if X.shape[1] != loaded.embed_dim:
            raise ValueError(
                f"X has {X.shape[1]} features but {loaded.name}'s embeddings have "
                f"{loaded.embed_dim}; pass embeddings of the same model."
            )

    def _invert(self, X):
        import torch

        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float32, np.float64])
        loaded, normalize = _resolve_loaded(self.encoder)
        self._check_model(loaded)
        self._check_width(X, loaded)
        targets = _unit_targets(X)
        injector = self._injector(loaded)
        init = self._initial_tokens(injector.token_width)

        batches = list(iter_batches(X.shape[0], self.batch_size))
        progress = None
        if self.verbose:
            from tqdm.auto import tqdm

            progress = tqdm(
                total=len(batches) * self.n_steps, desc=type(self).__name__, unit="step"
            )
        outputs, curve_sum, n_iter = [], np.zeros(self.n_steps), 0
        for batch in batches:
            batch_targets = torch.as_tensor(targets[batch], device=loaded.device)
            with torch.enable_grad():  # also when called under torch.no_grad()
                features, history = self._optimise(loaded, injector, init, batch_targets, progress)
            outputs.append(features)
            n_iter = max(n_iter, history.shape[1])
            # A batch that stopped early keeps its last losses for the remaining steps.
            padded = np.pad(history, ((0, 0), (0, self.n_steps - history.shape[1])), mode="edge")
            curve_sum += padded.sum(axis=0)
        if progress is not None:
            progress.close()
        out = np.concatenate(outputs).astype(np.float32)
        if not np.isfinite(out).all():
            rows = np.flatnonzero(~np.isfinite(out).all(axis=1))
            raise ValueError(
                f"{type(self).__name__}: {loaded.name} gave NaN or inf features for rows "
                f"{rows[:10].tolist()}; in fp16 the activations can overflow "
                "(use an encoder with precision='fp32'), else the weights hold NaN or inf."
            )
        if normalize:
            out = l2_normalize(out).astype(np.float32)
        return out, (curve_sum / X.shape[0])[:n_iter].astype(np.float32)

    def _initial_tokens(self, width):
        rng = check_random_state(self.random_state)
        draw = rng.standard_normal((self._n_pseudo, width)) * _INIT_STD
        return draw.astype(np.float32)

    def _optimise(self, loaded, injector, init, targets, progress=None):
        """Optimise one batch of unit ``targets``.

        Returns (features (B, d) numpy, per-row losses (B, steps)).
        """
        import torch
        import torch.nn.functional as F

        n_rows = targets.shape[0]
        start = torch.as_tensor(init, device=loaded.device)
        tokens = start.expand(n_rows, *start.shape).clone().requires_grad_(True)
        optimizer = torch.optim.AdamW(
            [tokens], lr=self.learning_rate, weight_decay=self.weight_decay
        )
        active = torch.ones(n_rows, dtype=torch.bool, device=loaded.device)
        frozen = tokens.detach().clone()
        best = torch.full((n_rows,), float("inf"), device=loaded.device)
        stale = torch.zeros(n_rows, dtype=torch.long, device=loaded.device)
        history = []
        marker = injector.marker(n_rows)
        for _ in range(self.n_steps):
            optimizer.zero_grad(set_to_none=True)
            with loaded.autocast():
                features = injector.forward(marker, tokens)
            losses = 1.0 - F.cosine_similarity(features.float(), targets, dim=-1)
            losses.sum().backward()
            history.append(losses.detach())
            if progress is not None:
                progress.update(1)
            if self.tol is not None:
                improved = losses.detach() < best - self.tol
                best = torch.minimum(best, losses.detach())
                stale = torch.where(improved, 0, stale + 1)
                stop = active & (stale >= _N_ITER_NO_CHANGE)
                frozen[stop] = tokens.detach()[stop]
                active &= ~stop
                if not active.any():
                    if progress is not None:
                        progress.update(self.n_steps - len(history))
                    break
            optimizer.step()
            if not active.all():
                with torch.no_grad():
                    tokens[~active] = frozen[~active]
        with torch.no_grad(), loaded.autocast():
            features = injector.forward(marker, tokens).float()
        return features.cpu().numpy(), torch.stack(history, dim=1).cpu().numpy()


# --------------------------------------------------------------------------- OTI


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
        self.n_tokens = n_tokens
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
    vocabulary of the tiny models has none).
    """
    import torch

    if not isinstance(template, str) or template.count("{}") != 1:
        raise ValueError(
            f"template must be a string with exactly one '{{}}' placeholder, got {template!r}."
        )
    empty = tokenizer([""])[0]
    sot, eot, pad = empty[0], empty[1], empty[-1]
    prefix, suffix = template.split("{}")
    placeholder = _body_ids(tokenizer, "x")[:1]
    ids = torch.cat(
        [
            sot[None],
            _body_ids(tokenizer, prefix),
            placeholder.repeat(n_tokens),
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

    @property
    def _n_pseudo(self):
        return self.n_tokens

    def _check_model(self, loaded):
        if loaded.tokenizer is None:
            raise ValueError(
                f"TextualInverter needs a model with a text tower; {loaded.name} has none."
            )
        token_embedding(loaded.model, loaded.name)
        _template_tokens(loaded.tokenizer, self.template, self.n_tokens)

    def _injector(self, loaded):
        return _TextInjector(loaded, self.template, self.n_tokens)


# --------------------------------------------------------------------------- OVI


class _PatchInjector:
    """Replaces a ViT's patch embeddings by pseudo patches (nearest-repeated to the grid)."""

    def __init__(self, loaded, n_patches):
        visual = vit_tower(loaded.model, loaded.name)
        self.loaded = loaded
        self.conv = visual.conv1
        self.token_width = int(visual.class_embedding.shape[-1])
        self.n_grid = int(visual.positional_embedding.shape[0]) - 1
        if n_patches > self.n_grid:
            raise ValueError(
                f"n_patches={n_patches} exceeds the {self.n_grid} patch positions of "
                f"{loaded.name}'s image tower."
            )
        self.n_patches = n_patches

    def marker(self, n_rows):
        import torch

        height, width = self.loaded.image_size
        return torch.zeros(
            (n_rows, 3, height, width), device=self.loaded.device, dtype=self.loaded.dtype
        )

    def forward(self, marker, tokens):
        import torch

        # As Cross the Gap does with nearest interpolation: grid position i holds
        # pseudo patch floor(i * n_patches / n_grid).
        source = torch.arange(self.n_grid, device=tokens.device) * self.n_patches // self.n_grid

        def replace(patches):
            batch, width, grid_h, grid_w = patches.shape
            grid = tokens[:, source].to(patches.dtype)  # (B, n_grid, width)
            return grid.permute(0, 2, 1).reshape(batch, width, grid_h, grid_w)

        with replace_output(self.conv, marker, replace):
            return self.loaded.model.encode_image(marker)


class VisualInverter(_BaseInverter):
    """Optimization-based Visual Inversion (OVI): text embeddings to image features.

    For each text embedding, ``n_patches`` pseudo-patch tokens replace the patch
    embeddings of a ViT image tower (repeated over the patch grid by nearest
    interpolation, after which the class token and positional embeddings are added
    as for an image) and are optimised with AdamW so that the image feature has
    maximal cosine similarity with the text embedding. ``transform`` returns those
    image features.

    The input is not checked to be *text* embeddings (same width as image ones).

    Parameters
    ----------
    encoder : CLIPEncoder, str or None, default=None
        As for :class:`TextualInverter`; the image tower must be a ViT.
    n_patches : int or "auto", default="auto"
        Pseudo patches per row (at most the number of patch positions). ``"auto"``:
        Cross the Gap's per-model setting (``configs/ovi/*.yaml``): 4 for CLIP
        ViT-L/14 and SigLIP B/16, 2 for OpenCLIP ViT-L/14 and SLIP L/16, 1 otherwise.
    n_steps : int, default=1000
        Optimisation steps per batch.
    learning_rate : float, default=0.02
        AdamW's learning rate.
    weight_decay : float, default=0.01
        AdamW's decoupled weight decay.
    batch_size : int, default=64
        Rows optimised together (speed only; results do not depend on it).
    tol : float or None, default=None
        Per-row early stop, as for :class:`TextualInverter`.
    random_state : int, RandomState or None, default=None
        Seeds the initial patches, N(0, 0.02^2), shared by all rows.
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
    Mistretta et al., "Cross the Gap", ICLR 2025, Sec. 3 (OVI).

    Examples
    --------
    >>> from skvlm import CLIPEncoder
    >>> encoder = CLIPEncoder("skvlm-tiny", pretrained=None, device="cpu")
    >>> texts = encoder.encode_text(["a red circle", "a blue square"])
    >>> ovi = VisualInverter(encoder, n_steps=20, random_state=0)
    >>> ovi.fit_transform(texts).shape
    (2, 64)
    """

    _parameter_constraints = {
        **_BaseInverter._parameter_constraints,
        "n_patches": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
    }

    def __init__(
        self,
        encoder=None,
        *,
        n_patches="auto",
        n_steps=1000,
        learning_rate=0.02,
        weight_decay=0.01,
        batch_size=64,
        tol=None,
        random_state=None,
        verbose=0,
    ):
        self.encoder = encoder
        self.n_patches = n_patches
        self.n_steps = n_steps
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose

    @property
    def _n_pseudo(self):
        return self._patches_for(_resolve_loaded(self.encoder)[0])

    def _patches_for(self, loaded):
        if self.n_patches == "auto":
            return _auto_n_patches(loaded.name, loaded.pretrained)
        return self.n_patches

    def _check_model(self, loaded):
        _PatchInjector(loaded, self._patches_for(loaded))

    def _injector(self, loaded):
        return _PatchInjector(loaded, self._patches_for(loaded))


def _auto_n_patches(name, pretrained):
    """Cross the Gap's OVI pseudo-patch count for a model (``configs/ovi/*.yaml``)."""
    name = str(name)
    if name.startswith("ViT-L-14"):
        return 4 if pretrained == "openai" else 2  # CLIP vs OpenCLIP ViT-L/14
    if name.startswith("ViT-B-16-SigLIP"):
        return 4
    if "slip" in name.lower() and ("l-16" in name.lower() or "l16" in name.lower()):
        return 2
    return 1
