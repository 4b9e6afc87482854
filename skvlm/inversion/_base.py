"""The optimisation loop shared by OTI and OVI; each subclass says what to inject.

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

A subclass provides ``_check_model(loaded)`` (raise if the model cannot be inverted
into) and ``_injector(loaded)``: an object with ``n_pseudo`` and ``token_width`` (the
shape of one row's pseudo tokens), ``marker(n_rows)`` (the tower's input that the
injection replaces) and ``forward(marker, tokens)`` (the tower's features).
"""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from .._math import iter_batches, l2_normalize
from .._sklearn import HasMethods, Interval, _DocLinkMixin, _fit_context

_N_ITER_NO_CHANGE = 10
_INIT_STD = 0.02


def _resolve_loaded(encoder):
    """The cached LoadedModel behind ``encoder`` and whether outputs are normalised."""
    from ..models import load_model

    if encoder is None:
        from ..encoders import CLIPEncoder

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


class _BaseInverter(
    _DocLinkMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
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
        init = self._initial_tokens(injector.n_pseudo, injector.token_width)

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

    def _initial_tokens(self, n_pseudo, width):
        rng = check_random_state(self.random_state)
        draw = rng.standard_normal((n_pseudo, width)) * _INIT_STD
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
