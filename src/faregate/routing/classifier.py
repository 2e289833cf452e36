"""The router's classifier: per cheaper tier, the probability that it answers as well as the frontier.

What it predicts. For a tier t and the frontier f, with per-prompt scores q_t, q_f in 0..1, the label is
``1 - clip(q_f - q_t, 0, 1)``: 1 when the tier does as well as the frontier, 0 when the frontier is
right and the tier wrong (for 0/1 scores, exactly "t is as good as f"). Routing well is ranking prompts
by the expected gap E[q_f - q_t | x], so the classifier first estimates that gap and then calibrates it
(Platt scaling, fitted on held-out folds) into the probability of the label.

How it estimates the gap: a blend, fitted by non-negative least squares on held-out folds, of
- a logistic model per tier of E[q | x] (L2, Newton's method) on the request embedding (the one the
  semantic cache computes) and the cheap features (`faregate.routing.features`), whose difference
  q_f - q_t is the gap. Predicting both tiers' quality, not just "is the cheap tier right", matters: a
  prompt that both tiers fail gains nothing from the frontier, and ranking by the gap is what recovers
  the performance gap (+0.05 to +0.10 APGR on MMLU and GSM8K over modelling the cheap tier alone);
- the mean gap of the k nearest training prompts (cosine similarity in a PCA-reduced embedding space,
  so that the search over the stored prompts costs ~0.1 ms);
- the mean gap of the request's category (the feature name at serving time), shrunk toward the overall
  mean; a category not seen in training contributes the overall mean, i.e. nothing.

The regularisation strength and k are chosen by the same inner cross-validation.

"Unsure": the similarity of the request to its nearest training prompt. Below `ood_floor` (the 0.5th
percentile of the training prompts' own held-out nearest-neighbour similarities) the request is unlike
anything the router learnt from, and the policy sends it to the frontier.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import numpy.typing as npt

from faregate.routing.metrics import apgr

__all__ = ["Classifier", "Fitted", "fit_classifier", "fit_logistic"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

LAMBDAS = (1.0, 3.0, 10.0, 30.0)
NEIGHBOURS = (10, 25, 50, 100, 200)
FEATURE_SCALE = 0.2  # standardised cheap features next to unit-norm embeddings (a fixed prior, see fit)
CATEGORY_SHRINK = 10.0  # pseudo-rows pulling a category's mean gap toward the overall mean
PCA_DIM = 64
MAX_KEYS = 20_000  # training prompts kept for the neighbour search (a random sample beyond this)
OOD_QUANTILE = 0.005


def _sigmoid(z: F64) -> F64:
    out: F64 = 1.0 / (1.0 + np.exp(-np.clip(z, -35.0, 35.0)))
    return out


def fit_logistic(
    x: F64, y: F64, lam: float, *, init: F64 | None = None, max_iter: int = 50, tol: float = 1e-7
) -> F64:
    """L2-regularised logistic regression by Newton's method; returns (d + 1,) weights, the bias last.

    The loss is the summed cross-entropy plus ``lam * |w|^2 / 2`` (the bias is not penalised); ``y`` may
    be fractional (soft labels, e.g. judge scores in 0..1).
    """
    n, d = x.shape
    xb = np.empty((n, d + 1))
    xb[:, :d] = x
    xb[:, d] = 1.0
    beta = np.zeros(d + 1) if init is None else init.copy()
    ridge = np.full(d + 1, lam)
    ridge[d] = 1e-8
    for _ in range(max_iter):
        p = _sigmoid(xb @ beta)
        grad = xb.T @ (p - y) + ridge * beta
        weight = p * (1.0 - p)
        hess = (xb * weight[:, None]).T @ xb
        hess[np.diag_indices_from(hess)] += ridge
        step = np.linalg.solve(hess, grad)
        beta -= step
        if float(np.max(np.abs(step))) < tol:
            break
    return beta


@dataclass(frozen=True, slots=True)
class _Scaler:
    """Cheap features: clipped to the training range (so unseen extremes are inert), standardised."""

    lo: F32
    hi: F32
    mu: F32
    inv: F32  # FEATURE_SCALE / sd

    @classmethod
    def fit(cls, feats: F64) -> _Scaler:
        lo, hi = feats.min(axis=0), feats.max(axis=0)
        mu = feats.mean(axis=0)
        sd = np.maximum(feats.std(axis=0), 0.05)
        f32 = np.float32
        return cls(lo.astype(f32), hi.astype(f32), mu.astype(f32), (FEATURE_SCALE / sd).astype(f32))

    def transform(self, feats: npt.NDArray[Any]) -> F64:
        out: F64 = (np.clip(feats, self.lo, self.hi) - self.mu) * self.inv
        return out.astype(np.float64)


@dataclass(slots=True)
class Classifier:
    """A trained classifier; `predict` for batches, `predict_one` for the gateway's one request."""

    tiers: int  # tiers including the frontier
    scaler: _Scaler
    weights: F32  # (tiers, dim + features): the logistic quality model of each tier
    bias: F32  # (tiers,)
    pca_mean: F32  # (dim,)
    pca: F32  # (dim, p)
    keys: F32  # (m, p) unit rows: stored training prompts
    key_gaps: F32  # (m, tiers - 1): their gaps q_f - q_t
    k: int
    categories: dict[str, int]
    category_gaps: F32  # (categories + 1, tiers - 1): the last row is the overall mean
    blend: F64  # (tiers - 1, 4): weights of [logistic gap, neighbour gap, category gap] and intercept
    platt: F64  # (tiers - 1, 2): probability = sigmoid(a * gap + b)
    ood_floor: float
    dim: int = field(init=False)
    _we: F32 = field(init=False, repr=False)
    _wf: F32 = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.dim = self.pca_mean.shape[0]
        self._we = np.ascontiguousarray(self.weights[:, : self.dim])
        self._wf = np.ascontiguousarray(self.weights[:, self.dim :])

    # -- batch -------------------------------------------------------------------------------------
    def components(
        self, emb: npt.NDArray[Any], feats: npt.NDArray[Any], categories: Sequence[str | None]
    ) -> tuple[F64, F64]:
        """(n, tiers - 1, 3) gap estimates [logistic, neighbours, category] and (n,) nearest similarity."""
        emb64 = np.asarray(emb, dtype=np.float64)
        x = np.hstack([emb64, self.scaler.transform(feats)])
        q = _sigmoid(x @ self.weights.T.astype(np.float64) + self.bias)
        lr_gap = q[:, -1:] - q[:, :-1]
        knn_gap, nearest = _neighbours(
            _project(emb64, self.pca_mean, self.pca), self.keys.astype(np.float64), self.key_gaps, self.k
        )
        default = len(self.categories)
        rows = np.array(
            [self.categories.get(c, default) if c else default for c in categories], dtype=np.intp
        )
        cat_gap = self.category_gaps[rows].astype(np.float64)
        return np.stack([lr_gap, knn_gap, cat_gap], axis=2), nearest

    def predict(
        self, emb: npt.NDArray[Any], feats: npt.NDArray[Any], categories: Sequence[str | None]
    ) -> tuple[F64, F64]:
        """(n, tiers - 1) calibrated probabilities and (n,) nearest-neighbour similarities."""
        comps, nearest = self.components(emb, feats, categories)
        return _calibrate(comps, self.blend, self.platt), nearest

    def blended(self, comps: F64) -> F64:
        """(n, tiers - 1) blended gap estimates from `components` (higher: the frontier is needed)."""
        return _blend(comps, self.blend)

    def calibrated(self, gap: F64) -> F64:
        """(n, tiers - 1) probabilities that each cheaper tier answers as well as the frontier."""
        return _sigmoid(gap * self.platt[:, 0] + self.platt[:, 1])

    def gap_scores(
        self, emb: npt.NDArray[Any], feats: npt.NDArray[Any], categories: Sequence[str | None]
    ) -> F64:
        """(n, tiers - 1) blended gap estimates (the ranking the probabilities are monotone in)."""
        comps, _ = self.components(emb, feats, categories)
        return _blend(comps, self.blend)

    # -- one request -------------------------------------------------------------------------------
    def predict_one(self, emb: F32, feats: F32, category: str | None) -> tuple[F32, float]:
        """(tiers - 1,) probabilities and the nearest similarity for one request, in float32."""
        s = self.scaler
        f = np.clip(feats, s.lo, s.hi)
        f -= s.mu
        f *= s.inv
        z = self._we @ emb
        z += self._wf @ f
        z += self.bias
        np.clip(z, -30.0, 30.0, out=z)  # exp() below stays finite whatever the input
        np.negative(z, out=z)
        np.exp(z, out=z)
        z += 1.0
        np.reciprocal(z, out=z)  # quality of each tier
        lr_gap = z[-1] - z[:-1]
        v = (emb - self.pca_mean) @ self.pca
        norm = float(np.sqrt(v @ v))
        sims = self.keys @ v
        if norm > 0:
            sims /= norm
        k = self.k
        top = np.argpartition(sims, len(sims) - k)[len(sims) - k :]
        knn_gap = self.key_gaps[top].mean(axis=0)
        nearest = float(sims[top].max())
        row = self.categories.get(category, len(self.categories)) if category else len(self.categories)
        cat_gap = self.category_gaps[row]
        b = self.blend
        g = b[:, 0] * lr_gap + b[:, 1] * knn_gap + b[:, 2] * cat_gap + b[:, 3]
        prob = 1.0 / (1.0 + np.exp(-(self.platt[:, 0] * g + self.platt[:, 1])))
        return prob.astype(np.float32), nearest

    # -- storage -----------------------------------------------------------------------------------
    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        s = self.scaler
        return {
            "feat_lo": s.lo,
            "feat_hi": s.hi,
            "feat_mu": s.mu,
            "feat_inv": s.inv,
            "weights": self.weights,
            "bias": self.bias,
            "pca_mean": self.pca_mean,
            "pca": self.pca,
            "keys": self.keys.astype(np.float16),
            "key_gaps": self.key_gaps.astype(np.float16),
            "category_gaps": self.category_gaps,
            "blend": self.blend,
            "platt": self.platt,
        }

    def meta(self) -> dict[str, Any]:
        return {
            "tiers": self.tiers,
            "k": self.k,
            "categories": sorted(self.categories, key=self.categories.__getitem__),
            "ood_floor": self.ood_floor,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, npt.NDArray[Any]], meta: dict[str, Any]) -> Classifier:
        """Rebuild from `arrays` and `meta`; raises KeyError/ValueError when they do not fit together."""
        f32 = np.float32

        def a(name: str, dtype: type[np.floating[Any]] = f32) -> npt.NDArray[Any]:
            return np.ascontiguousarray(arrays[name], dtype=dtype)

        tiers = int(meta["tiers"])
        categories = [str(c) for c in meta["categories"]]
        clf = cls(
            tiers=tiers,
            scaler=_Scaler(a("feat_lo"), a("feat_hi"), a("feat_mu"), a("feat_inv")),
            weights=a("weights"),
            bias=a("bias"),
            pca_mean=a("pca_mean"),
            pca=a("pca"),
            keys=a("keys"),
            key_gaps=a("key_gaps"),
            k=int(meta["k"]),
            categories={c: i for i, c in enumerate(categories)},
            category_gaps=a("category_gaps"),
            blend=a("blend", np.float64),
            platt=a("platt", np.float64),
            ood_floor=float(meta["ood_floor"]),
        )
        clf.check()
        return clf

    def check(self) -> None:
        """Shapes that fit together (a file that loads must not fail at the first request)."""
        t, d, f = self.tiers, self.dim, len(self.scaler.lo)
        m, p = self.keys.shape
        expect = {
            "weights": (self.weights.shape, (t, d + f)),
            "bias": (self.bias.shape, (t,)),
            "pca": (self.pca.shape, (d, p)),
            "key_gaps": (self.key_gaps.shape, (m, t - 1)),
            "category_gaps": (self.category_gaps.shape, (len(self.categories) + 1, t - 1)),
            "blend": (self.blend.shape, (t - 1, 4)),
            "platt": (self.platt.shape, (t - 1, 2)),
        }
        for name, (got, want) in expect.items():
            if got != want:
                raise ValueError(f"array {name} has shape {got}, expected {want}")
        if t < 2 or not 1 <= self.k <= m:
            raise ValueError(f"bad sizes: tiers={t}, k={self.k}, stored prompts={m}")
        for name, arr in self.arrays().items():
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"array {name} holds non-finite values")


@dataclass(frozen=True, slots=True)
class Fitted:
    classifier: Classifier
    oof_prob: F64  # (n, tiers - 1) held-out probabilities (each row predicted by a model that never saw it)
    oof_gap: F64  # (n, tiers - 1) held-out blended gap estimates
    oof_nearest: F64  # (n,) held-out nearest-neighbour similarities
    summary: dict[str, Any]


def _project(emb: F64, mean: npt.NDArray[Any], pca: npt.NDArray[Any]) -> F64:
    v: F64 = (emb - mean) @ pca.astype(np.float64)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return v


def _neighbours(
    queries: F64, keys: F64, gaps: npt.NDArray[Any], k: int, chunk: int = 1024
) -> tuple[F64, F64]:
    """Mean gap of each query's k most similar keys, and the top similarity."""
    n = len(queries)
    out = np.empty((n, gaps.shape[1]))
    nearest = np.empty(n)
    gaps64 = gaps.astype(np.float64)
    for start in range(0, n, chunk):
        sims = queries[start : start + chunk] @ keys.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        out[start : start + chunk] = gaps64[top].mean(axis=1)
        nearest[start : start + chunk] = sims.max(axis=1)
    return out, nearest


def _sorted_neighbour_means(
    queries: F64, keys: F64, gaps: F64, ks: Sequence[int], chunk: int = 1024
) -> tuple[dict[int, F64], F64]:
    """For every k in ks at once: the mean gap of the k nearest keys; plus the top similarity."""
    kmax = max(ks)
    out = {k: np.empty((len(queries), gaps.shape[1])) for k in ks}
    nearest = np.empty(len(queries))
    for start in range(0, len(queries), chunk):
        sims = queries[start : start + chunk] @ keys.T
        top = np.argpartition(-sims, kmax - 1, axis=1)[:, :kmax]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        cum = np.cumsum(gaps[top], axis=1)  # (chunk, kmax, tiers - 1)
        for k in ks:
            out[k][start : start + chunk] = cum[:, k - 1] / k
        nearest[start : start + chunk] = sims.max(axis=1)
    return out, nearest


def _pca(emb: F64, dim: int) -> tuple[F64, F64]:
    mean = emb.mean(axis=0)
    _, _, vt = np.linalg.svd(emb - mean, full_matrices=False)
    return mean, vt[: min(dim, vt.shape[0])].T


def _category_table(cats: Sequence[str], gaps: F64) -> tuple[dict[str, int], F64]:
    overall = gaps.mean(axis=0)
    names = sorted(set(cats))
    index = {c: i for i, c in enumerate(names)}
    rows = np.array([index[c] for c in cats], dtype=np.intp)
    counts = np.bincount(rows, minlength=len(names)).astype(np.float64)
    table = np.empty((len(names) + 1, gaps.shape[1]))
    for j in range(gaps.shape[1]):
        sums = np.bincount(rows, weights=gaps[:, j], minlength=len(names))
        table[:-1, j] = (sums + CATEGORY_SHRINK * overall[j]) / (counts + CATEGORY_SHRINK)
    table[-1] = overall
    if len(names) < 2:  # one category carries no ranking signal
        return {}, table[-1:]
    return index, table


def _blend(comps: F64, blend: F64) -> F64:
    out: F64 = np.einsum("ntc,tc->nt", comps, blend[:, :3]) + blend[:, 3]
    return out


def _calibrate(comps: F64, blend: F64, platt: F64) -> F64:
    return _sigmoid(_blend(comps, blend) * platt[:, 0] + platt[:, 1])


def _nnls_blend(comps: F64, target: F64) -> F64:
    """Non-negative least squares of target on comps' columns (plus an intercept), by subsets (3 columns)."""
    n, c = comps.shape
    best: tuple[float, F64] | None = None
    for size in range(c + 1):
        for subset in combinations(range(c), size):
            cols = [comps[:, j] for j in subset if np.std(comps[:, j]) > 1e-9]
            if len(cols) != size:
                continue
            x = np.column_stack([*cols, np.ones(n)])
            coef, *_ = np.linalg.lstsq(x, target, rcond=None)
            if np.any(coef[:-1] < 0):
                continue
            resid = float(np.sum((x @ coef - target) ** 2))
            if best is None or resid < best[0] - 1e-12:
                w = np.zeros(c + 1)
                w[list(subset)] = coef[:-1]
                w[c] = coef[-1]
                best = (resid, w)
    assert best is not None  # the intercept-only subset always qualifies
    return best[1]


def _tier_apgr(score: F64, quality: F64, t: int) -> float | None:
    """APGR of routing tier t vs the frontier by ``score`` (higher: frontier); None if they never differ."""
    if np.allclose(quality[:, t].mean(), quality[:, -1].mean()):
        return None
    return apgr(score, quality[:, t], quality[:, -1])


def _mean_apgr(scores: F64, quality: F64) -> float:
    values = [_tier_apgr(scores[:, t], quality, t) for t in range(quality.shape[1] - 1)]
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else 0.5


def fold_ids(n: int, folds: int, seed: int) -> npt.NDArray[np.intp]:
    """A fold number per row, balanced and shuffled by ``seed``."""
    ids = np.arange(n) % folds
    np.random.default_rng(seed).shuffle(ids)
    return ids.astype(np.intp)


def fit_classifier(
    emb: npt.NDArray[Any],
    feats: npt.NDArray[Any],
    quality: F64,
    categories: Sequence[str],
    *,
    folds: int = 5,
    seed: int = 0,
    lambdas: Sequence[float] = LAMBDAS,
    neighbours: Sequence[int] = NEIGHBOURS,
    progress: Callable[[str], None] | None = None,
) -> Fitted:
    """Train on (n, dim) embeddings, (n, features) cheap features and (n, tiers) scores, frontier last.

    Hyperparameters (the L2 strength of the logistic models and the neighbour count) are chosen by
    ``folds``-fold cross-validation on these rows only; the blend and the calibration are fitted on the
    same held-out predictions; then every part is refitted on all rows.
    """
    emb64 = np.asarray(emb, dtype=np.float64)
    feats64 = np.asarray(feats, dtype=np.float64)
    n, tiers = quality.shape
    if tiers < 2:
        raise ValueError("need at least two tiers")
    if len(emb64) != n or len(feats64) != n or len(categories) != n:
        raise ValueError("embeddings, features, scores and categories need one row each")
    gaps = quality[:, -1:] - quality[:, :-1]
    folds = max(2, min(folds, n // 10))
    ids = fold_ids(n, folds, seed)
    ks = sorted({min(k, max(1, (n - n // folds) // 4)) for k in neighbours})
    lr_oof = {lam: np.zeros((n, tiers - 1)) for lam in lambdas}
    knn_oof = {k: np.zeros((n, tiers - 1)) for k in ks}
    cat_oof = np.zeros((n, tiers - 1))
    nearest_oof = np.zeros(n)
    cats = list(categories)
    for fold in range(folds):
        if progress:
            progress(f"fold {fold + 1}/{folds}")
        te = np.flatnonzero(ids == fold)
        tr = np.flatnonzero(ids != fold)
        scaler = _Scaler.fit(feats64[tr])
        x = np.hstack([emb64, scaler.transform(feats64)])
        for t in range(tiers):
            beta: F64 | None = None
            for lam in sorted(lambdas):
                beta = fit_logistic(x[tr], quality[tr, t], lam, init=beta)
                q = _sigmoid(x[te] @ beta[:-1] + beta[-1])
                if t == tiers - 1:
                    lr_oof[lam][te] += q[:, None]
                else:
                    lr_oof[lam][te, t] -= q
        mean, pca = _pca(emb64[tr], PCA_DIM)
        keys = _project(emb64[tr], mean, pca)
        means, near = _sorted_neighbour_means(_project(emb64[te], mean, pca), keys, gaps[tr], ks)
        for k in ks:
            knn_oof[k][te] = means[k]
        nearest_oof[te] = near
        index, table = _category_table([cats[i] for i in tr], gaps[tr])
        default = len(index)
        cat_oof[te] = table[[index.get(cats[i], default) for i in te]]

    lr_scores = {lam: _mean_apgr(lr_oof[lam], quality) for lam in lambdas}
    knn_scores = {k: _mean_apgr(knn_oof[k], quality) for k in ks}
    lam = max(lambdas, key=lambda v: (lr_scores[v], -abs(math.log(v / 10.0))))
    k = max(ks, key=lambda v: (knn_scores[v], v))
    comps = np.stack([lr_oof[lam], knn_oof[k], cat_oof], axis=2)
    blend = np.stack([_nnls_blend(comps[:, t], gaps[:, t]) for t in range(tiers - 1)])
    oof_gap = _blend(comps, blend)
    platt = np.empty((tiers - 1, 2))
    for t in range(tiers - 1):
        label = 1.0 - np.clip(gaps[:, t], 0.0, 1.0)
        beta = fit_logistic(oof_gap[:, t : t + 1], label, 1e-3)
        platt[t] = beta
    oof_prob = _sigmoid(oof_gap * platt[:, 0] + platt[:, 1])

    if progress:
        progress("final fit")
    scaler = _Scaler.fit(feats64)
    x = np.hstack([emb64, scaler.transform(feats64)])
    weights = np.empty((tiers, x.shape[1]))
    bias = np.empty(tiers)
    for t in range(tiers):
        beta = fit_logistic(x, quality[:, t], lam)
        weights[t], bias[t] = beta[:-1], beta[-1]
    keep = np.arange(n)
    if n > MAX_KEYS:
        keep = np.sort(np.random.default_rng(seed).choice(n, MAX_KEYS, replace=False))
    mean, pca = _pca(emb64[keep], PCA_DIM)
    keys = _project(emb64[keep], mean, pca)
    index, table = _category_table(cats, gaps)
    f32 = np.float32
    classifier = Classifier(
        tiers=tiers,
        scaler=scaler,
        weights=weights.astype(f32),
        bias=bias.astype(f32),
        pca_mean=mean.astype(f32),
        pca=pca.astype(f32),
        keys=keys.astype(f32),
        key_gaps=gaps[keep].astype(f32),
        k=min(k, len(keep)),
        categories=index,
        category_gaps=table.astype(f32),
        blend=blend,
        platt=platt,
        ood_floor=float(np.quantile(nearest_oof, OOD_QUANTILE)),
    )
    summary = {
        "folds": folds,
        "lambda": lam,
        "neighbours": k,
        "heldout_apgr": {
            "logistic": round(lr_scores[lam], 4),
            "neighbours": round(knn_scores[k], 4),
            "blend": round(_mean_apgr(oof_gap, quality), 4),
        },
        "blend": [[round(float(v), 4) for v in row] for row in blend],
        "categories": len(index),
    }
    return Fitted(classifier, oof_prob, oof_gap, nearest_oof, summary)
