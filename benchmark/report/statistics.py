"""The report's statistics over seeds: intervals, paired tests, Holm's correction, the bold rule, mean ranks,
and V-PETL Bench's PPT score. Plain numbers in, plain numbers out (no torch, no results files).

Seeds are paired across strategies: the same seed gives every strategy the same data split, batch order and
augmentation stream, so a strategy's accuracy on seed s is compared with another's on the same seed s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95  # two-sided intervals
ALPHA = 0.05  # family-wise error rate of each family of paired tests (Holm)
RESAMPLES = 9999  # bootstrap resamples (scipy's default)
METHOD = (
    "percentile"  # BCa's jackknife acceleration is unstable from 3 to 5 seeds; the percentile interval is not
)
SEED = 0  # a fixed generator: the same results folder gives the same report, byte for byte
PPT_SCALE = 1e7  # V-PETL Bench's normalising parameter count C


def bootstrap_interval(values: np.ndarray | list[float]) -> tuple[float, float]:
    """The 95% percentile-bootstrap interval of the mean over seeds; NaNs with fewer than two values.

    With few seeds the bootstrap interval is narrow (it cannot be wider than the values' range): read it
    beside the standard deviation, never instead of it."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return math.nan, math.nan
    if np.all(values == values[0]):  # every resample has the same mean
        return float(values[0]), float(values[0])
    result = stats.bootstrap(
        (values,),
        np.mean,
        confidence_level=CONFIDENCE,
        n_resamples=RESAMPLES,
        method=METHOD,
        rng=np.random.default_rng(SEED),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_p(a: pd.Series, b: pd.Series) -> tuple[float, float, int]:
    """Mean of a - b over the seeds (index) both have, the two-sided p-value of a paired t-test, and the number
    of shared seeds. p is NaN below two shared seeds, and 1 where every difference is 0 (nothing to tell).

    The t-test, not Wilcoxon's signed-rank test: with 3 to 5 seeds the exact signed-rank test cannot reach
    p < 0.05 at all (its smallest two-sided p is 0.25 with 3 pairs, 0.0625 with 5), so it could never call a
    strategy worse. The t-test assumes roughly normal seed-to-seed differences, which is what averaging over
    thousands of test images gives an accuracy."""
    shared = a.index.intersection(b.index)
    if len(shared) < 2:
        return (float((a[shared] - b[shared]).mean()) if len(shared) else math.nan), math.nan, len(shared)
    differences = (a[shared] - b[shared]).to_numpy(dtype=float)
    if np.all(differences == 0):
        return 0.0, 1.0, len(shared)
    p = stats.ttest_rel(a[shared].to_numpy(dtype=float), b[shared].to_numpy(dtype=float)).pvalue
    return float(differences.mean()), float(p), len(shared)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment (Holm 1979), controlling the family-wise error rate: the i-th smallest
    of m p-values is multiplied by m - i + 1, made non-decreasing, capped at 1. NaNs stay NaN and are not
    counted in m."""
    p = np.asarray(pvalues, dtype=float)
    finite = np.flatnonzero(~np.isnan(p))
    adjusted = np.full(len(p), np.nan)
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def compare_with(reference: pd.Series, others: Mapping[str, pd.Series]) -> pd.DataFrame:
    """Each of `others` (name -> value per seed) against `reference` (value per seed), paired over their
    shared seeds: mean difference (other - reference), shared seeds, raw and Holm-adjusted p-values."""
    rows = [(name, *paired_p(values, reference)) for name, values in others.items()]
    table = pd.DataFrame(rows, columns=["name", "difference", "p", "shared"]).set_index("name")
    table["p_holm"] = holm(table["p"].tolist())
    return table


def not_worse(values: Mapping[str, pd.Series], better: str = "higher") -> set[str]:
    """The bold set: the best mean, and every other entry not significantly worse than it, i.e. whose
    paired t-test against the best over their shared seeds gives no Holm-adjusted p < ALPHA (the family:
    every entry compared with the best). Ties for the best are all best. With a single seed nothing can be
    tested, and only the best is returned."""
    means = {name: series.mean() for name, series in values.items() if len(series)}
    if not means:
        return set()
    sign = 1 if better == "higher" else -1
    top = max(sign * mean for mean in means.values())
    best = [name for name, mean in means.items() if sign * mean == top]
    others = {name: values[name] for name in means if name not in best}
    if not others:
        return set(best)
    table = compare_with(values[best[0]], others)
    untested = table["shared"] < 2
    significantly = (table["p_holm"] < ALPHA) & (sign * table["difference"] < 0)
    return set(best) | set(table.index[~significantly & ~untested])


def mean_ranks(scores: pd.DataFrame, better: str = "higher") -> pd.Series:
    """Scores with one row per block (dataset and model) and one column per strategy: each block's ranks
    (1 = best, ties share the mean rank; scipy.stats.rankdata), averaged over blocks. Only strategies with
    a score in every block are ranked (a missing block would make ranks incomparable)."""
    complete = scores.dropna(axis=1)
    sign = -1 if better == "higher" else 1
    ranks = complete.apply(
        lambda row: pd.Series(stats.rankdata(sign * row.to_numpy()), index=row.index), axis=1
    )
    return ranks.mean().sort_values()


def ppt(accuracy: float | np.ndarray, params: float) -> float | np.ndarray:
    """V-PETL Bench's performance-parameter trade-off: accuracy (a fraction) x exp(-log10(P / 1e7 + 1)),
    with P the trainable parameters outside the classification head, as V-PETL Bench counts them."""
    return accuracy * np.exp(-np.log10(params / PPT_SCALE + 1))


def spread(values: np.ndarray | list[float]) -> tuple[float, float, float]:
    """Median, minimum and maximum: how a wall-clock reading is shown (one reading per run on a shared
    machine is noisy; the median resists one slow run)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    return float(np.median(values)), float(values.min()), float(values.max())


def distinct_costs(readings: Mapping[str, np.ndarray | list[float]], better: str = "lower") -> set[str]:
    """The bold set of a measured cost (one wall-clock reading per run): the best median, and every entry whose
    [min, max] overlaps the best's, since a difference smaller than the spread is no difference. Only entries
    with at least two readings take part: one reading has no spread to compare with."""
    ranges = {name: spread(values) for name, values in readings.items() if len(values) >= 2}
    if not ranges:
        return set()
    sign = 1 if better == "lower" else -1
    best = min(ranges, key=lambda name: sign * ranges[name][0])
    _, low, high = ranges[best]
    return {name for name, (_, lo, hi) in ranges.items() if lo <= high and hi >= low}
