"""Synthetic routing data with a learnable signal: hard prompts need the frontier, easy ones do not."""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

import numpy as np

from faregate.cache.embeddings import DIM
from faregate.routing.artifact import Router
from faregate.routing.classifier import fit_classifier
from faregate.routing.data import Tier
from faregate.routing.features import FEATURE_NAMES, cheap_features
from faregate.routing.policy import Policy

SMALL, FRONTIER = "cheap-model", "frontier-model"
EASY = [
    "What is the capital of {c}?",
    "Translate 'good morning' into {l}.",
    "Name a fruit that is {col}.",
    "Say hello to my friend from {c} in one short sentence.",
]
HARD = [
    "Prove that there are infinitely many primes of the form {a}k+{b}, giving every step.",
    "Compute the integral of x^{a} * exp(-{b}x) from 0 to infinity and explain each step.",
    "Solve the system {a}x + {b}y = 7, {b}x - {a}y = 3 and verify the solution.",
    "Write a Python function returning the {a}th Fibonacci number modulo {b} in O(log n) time.",
]
COUNTRIES = ["France", "Peru", "Japan", "Kenya", "Norway", "Chile", "Egypt", "India"]
LANGS = ["French", "Spanish", "German", "Italian"]
COLOURS = ["red", "yellow", "green", "orange"]


def outcome_rows(n: int, seed: int = 0, *, costs: bool = True) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for _ in range(n):
        hard = rng.random() < 0.4
        template = rng.choice(HARD if hard else EASY)
        prompt = template.format(
            c=rng.choice(COUNTRIES),
            l=rng.choice(LANGS),
            col=rng.choice(COLOURS),
            a=rng.randint(2, 9),
            b=rng.randint(2, 9),
        )
        strong = 1.0 if rng.random() < 0.9 else 0.0
        weak = float(rng.random() < (0.15 if hard else 0.9))
        row: dict[str, object] = {
            "prompt": prompt,
            "category": "hard" if hard else "easy",
            "scores": {SMALL: weak, FRONTIER: strong},
        }
        if costs:
            row["costs"] = {SMALL: 0.0001, FRONTIER: 0.002}
        rows.append(row)
    return rows


def write_rows(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@functools.cache
def synthetic_router(seed: int = 0) -> tuple[Router, np.ndarray, list[str]]:
    """A router fitted on random clustered embeddings (no model needed), with its test embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2, DIM))
    n = 300
    hard = rng.random(n) < 0.4
    emb = centres[hard.astype(int)] + rng.normal(scale=0.8, size=(n, DIM))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    weak = (rng.random(n) < np.where(hard, 0.15, 0.9)).astype(float)
    strong = (rng.random(n) < 0.9).astype(float)
    prompts = [("hard " if h else "easy ") + str(i) for i, h in enumerate(hard)]
    feats = np.stack([cheap_features(p) for p in prompts])
    assert feats.shape[1] == len(FEATURE_NAMES)
    fitted = fit_classifier(emb, feats, np.column_stack([weak, strong]), ["x"] * n)
    router = Router(
        [Tier("small", SMALL), Tier("frontier", FRONTIER)],
        fitted.classifier,
        Policy(("small", "frontier"), (0.6,)),
        {"training": fitted.summary},
    )
    return router, emb.astype(np.float32), prompts
