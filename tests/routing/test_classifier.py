import numpy as np
import pytest

from faregate.cache.embeddings import DIM
from faregate.routing.classifier import fit_classifier, fit_logistic
from faregate.routing.features import cheap_features
from faregate.routing.metrics import apgr
from tests.routing.helpers import synthetic_router


def test_logistic_regression_reaches_the_regularised_optimum() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0, 0.0]) + rng.normal(size=400) > 0).astype(float)
    lam = 2.0
    beta = fit_logistic(x, y, lam)
    p = 1 / (1 + np.exp(-(x @ beta[:-1] + beta[-1])))
    grad = x.T @ (p - y) + lam * beta[:-1]
    assert np.abs(grad).max() < 1e-6
    assert abs(float(np.sum(p - y))) < 1e-6  # the bias is not penalised
    assert beta[1] < -1.0 < 0.3 < beta[0]


def test_soft_labels_are_accepted() -> None:
    x = np.linspace(-2, 2, 50)[:, None]
    beta = fit_logistic(x, np.full(50, 0.7), 1.0)
    assert 1 / (1 + np.exp(-beta[-1])) == pytest.approx(0.7, abs=1e-4)


def test_fit_learns_the_gap_and_calibrates() -> None:
    router, emb, prompts = synthetic_router()
    clf = router.classifier
    feats = np.stack([cheap_features(p) for p in prompts])
    prob, nearest = clf.predict(emb, feats, [None] * len(prompts))
    hard = np.array([p.startswith("hard") for p in prompts])
    assert prob.shape == (len(prompts), 1)
    assert prob[hard, 0].mean() < 0.5 < prob[~hard, 0].mean()
    assert np.all((prob > 0) & (prob < 1))
    assert nearest.shape == (len(prompts),)
    assert router.meta["training"]["heldout_apgr"]["blend"] > 0.7


def test_one_request_matches_the_batch() -> None:
    router, emb, prompts = synthetic_router()
    clf = router.classifier
    feats = np.stack([cheap_features(p) for p in prompts])
    batch, near = clf.predict(emb[:20], feats[:20], ["x"] * 20)
    for i in range(20):
        one, nearest = clf.predict_one(emb[i], feats[i], "x")
        assert one == pytest.approx(batch[i], abs=1e-4)
        assert nearest == pytest.approx(near[i], abs=1e-4)


def test_held_out_probabilities_rank_the_gap() -> None:
    rng = np.random.default_rng(3)
    n = 400
    centres = rng.normal(size=(4, DIM))
    group = rng.integers(0, 4, n)
    emb = centres[group] + rng.normal(scale=1.0, size=(n, DIM))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    weak = (rng.random(n) < np.array([0.9, 0.8, 0.3, 0.1])[group]).astype(float)
    strong = (rng.random(n) < 0.9).astype(float)
    feats = np.zeros((n, len(cheap_features("x"))))
    fitted = fit_classifier(emb, feats, np.column_stack([weak, strong]), [""] * n)
    # held-out: every row scored by a model that did not see it
    assert apgr(-fitted.oof_prob[:, 0], weak, strong) > 0.7
    assert apgr(fitted.oof_gap[:, 0], weak, strong) == pytest.approx(
        apgr(-fitted.oof_prob[:, 0], weak, strong)
    )
    assert fitted.summary["folds"] == 5


def test_three_tiers() -> None:
    rng = np.random.default_rng(4)
    n = 300
    emb = rng.normal(size=(n, DIM))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    hardness = emb[:, 0] * 10
    quality = np.column_stack(
        [
            (rng.random(n) < 1 / (1 + np.exp(hardness))).astype(float),
            (rng.random(n) < 1 / (1 + np.exp(hardness - 1))).astype(float),
            np.ones(n),
        ]
    )
    feats = np.zeros((n, len(cheap_features("x"))))
    fitted = fit_classifier(emb, feats, quality, ["a" if i % 2 else "b" for i in range(n)])
    assert fitted.oof_prob.shape == (n, 2)
    assert fitted.classifier.category_gaps.shape == (3, 2)
    prob, _ = fitted.classifier.predict_one(emb[0].astype(np.float32), feats[0].astype(np.float32), "a")
    assert prob.shape == (2,)
