"""The interval arithmetic every reported number goes through (one place, pinned by tests).

- Over seeds (few-shot): the mean and a Student-t 95 % interval,
  ``mean ± t(0.975, n - 1) · s / √n``, with ``s`` the sample standard deviation. A gain
  is paired: the t interval of the per-seed differences (same splits for both methods).
- Over queries (retrieval) or items (diagnostics): a percentile bootstrap of the mean,
  resampling the same queries for both methods of a gain (paired).
- A verdict rests on intervals: a gain agrees with a claim when its whole interval lies
  on the claimed side of zero, disagrees when it lies on the other side, and is unclear
  when it straddles zero or has no interval (a single seed).
"""

import math

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 2000


def t_interval(values, confidence=CONFIDENCE):
    """Mean and Student-t interval of independent measurements.

    Parameters
    ----------
    values : array-like of shape (n,)
        One measurement per seed (NaN values are dropped).
    confidence : float, default=0.95

    Returns
    -------
    mean : float
        NaN when there is no value.
    interval : tuple of float or None
        ``(low, high)``; None with fewer than two values (no spread to measure).

    Examples
    --------
    >>> mean, (low, high) = t_interval([1.0, 2.0, 3.0])
    >>> mean, round(low, 4), round(high, 4)
    (2.0, -0.4841, 4.4841)
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, None
    mean = float(values.mean())
    if values.size < 2:
        return mean, None
    half = stats.t.ppf(0.5 + confidence / 2, values.size - 1) * values.std(ddof=1)
    half /= math.sqrt(values.size)
    return mean, (mean - float(half), mean + float(half))


def paired_t_interval(values, baseline, confidence=CONFIDENCE):
    """Mean gain ``values - baseline`` and its t interval, pairs matched by position."""
    values = np.asarray(values, dtype=np.float64)
    baseline = np.asarray(baseline, dtype=np.float64)
    if values.shape != baseline.shape:
        raise ValueError(
            f"paired values need the same shape, got {values.shape} and {baseline.shape}."
        )
    return t_interval(values - baseline, confidence)


def bootstrap_interval(
    values, baseline=None, *, confidence=CONFIDENCE, n_resamples=N_RESAMPLES, random_state=0
):
    """Mean of ``values`` (minus ``baseline``, paired) and its percentile bootstrap interval.

    The items (queries) are resampled with replacement ``n_resamples`` times; a pair
    with a NaN on either side (a query without relevant items) is left out.

    Returns
    -------
    mean : float
    interval : tuple of float or None
        None with fewer than two items.

    Examples
    --------
    >>> mean, interval = bootstrap_interval([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    >>> mean, interval
    (0.25, (0.25, 0.25))
    """
    values = np.asarray(values, dtype=np.float64)
    if baseline is not None:
        baseline = np.asarray(baseline, dtype=np.float64)
        if values.shape != baseline.shape:
            raise ValueError(
                f"paired values need the same shape, got {values.shape} and {baseline.shape}."
            )
        values = values - baseline
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, None
    mean = float(values.mean())
    if values.size < 2:
        return mean, None
    rng = np.random.default_rng(random_state)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, 256):  # bounded memory: 256 x n indices at a time
        stop = min(start + 256, n_resamples)
        means[start:stop] = values[rng.integers(0, values.size, (stop - start, values.size))].mean(
            1
        )
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return mean, (float(low), float(high))


def bootstrap_statistic(
    statistic, *samples, confidence=CONFIDENCE, n_resamples=N_RESAMPLES, random_state=0
):
    """``statistic(*samples)`` and its percentile bootstrap interval over shared rows.

    Row i of every sample is resampled together (paired): for a difference between two
    models measured on the same images, pass both models' rows.
    """
    n = len(samples[0])
    if any(len(s) != n for s in samples):
        raise ValueError("bootstrap_statistic needs samples with the same number of rows.")
    value = float(statistic(*samples))
    if n < 2:
        return value, None
    rng = np.random.default_rng(random_state)
    draws = np.empty(n_resamples)
    for b in range(n_resamples):
        rows = rng.integers(0, n, n)
        draws[b] = statistic(*(s[rows] for s in samples))
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return value, (float(low), float(high))


def gain(mean, interval):
    """A gain as reported in ``summary.json``: ``{"mean": ..., "ci95": [low, high]}``."""
    return {"mean": mean, "ci95": None if interval is None else [interval[0], interval[1]]}


def side(gain_entry, expected_sign):
    """``"agree"``, ``"disagree"`` or ``"unclear"``: where the interval lies w.r.t. zero."""
    interval = gain_entry.get("ci95")
    if interval is None or any(v is None or math.isnan(v) for v in interval):
        return "unclear"
    low, high = sorted(expected_sign * v for v in interval)
    if low > 0:
        return "agree"
    if high < 0:
        return "disagree"
    return "unclear"


def verdict(gains, expected_sign):
    """The verdict of a claim from the intervals of the gains it rests on.

    ``"holds"`` / ``"does not hold"`` when every interval excludes zero on the claimed /
    the opposite side; ``"no clear difference"`` when every interval straddles zero (or
    has none); ``"mixed"`` otherwise; ``"not measured"`` without any gain.

    Examples
    --------
    >>> verdict([{"mean": 0.02, "ci95": [0.01, 0.03]}], 1)
    'holds'
    >>> verdict([{"mean": 0.02, "ci95": [-0.01, 0.05]}], 1)
    'no clear difference'
    """
    sides = {side(g, expected_sign) for g in gains if g is not None}
    if not sides:
        return "not measured"
    if sides == {"agree"}:
        return "holds"
    if sides == {"disagree"}:
        return "does not hold"
    if sides == {"unclear"}:
        return "no clear difference"
    return "mixed"
