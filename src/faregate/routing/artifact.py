"""A trained router in one file, and the `Router` the gateway asks for a decision.

The file is a NumPy ``.npz`` (zip) archive, read with ``allow_pickle=False``: the classifier's arrays
plus ``meta``, a JSON document (as bytes) with the format name and version, the tiers and their
models, the policy's bars, the embedding model it was trained with, the cheap features' names, and the
training summary. Anything wrong with the file (missing, not an archive, a missing array, another
feature set or embedding model, shapes that do not fit) raises `RouterFileError` naming the path and
the reason, so the gateway refuses to start rather than route with a broken router.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from faregate.cache.embeddings import DIM, MODEL_NAME
from faregate.errors import ConfigError
from faregate.routing.classifier import Classifier
from faregate.routing.data import Tier
from faregate.routing.features import FEATURE_NAMES, cheap_features
from faregate.routing.policy import Policy

__all__ = [
    "FORMAT",
    "VERSION",
    "Decision",
    "Router",
    "RouterFileError",
    "default_router_path",
    "load_router",
    "save_router",
]

FORMAT = "faregate-router"
VERSION = 1


class RouterFileError(ConfigError):
    """A router file that cannot be used: ``path`` and ``reason`` say which and why."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"router file {path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def default_router_path() -> Path:
    """The router that ships in the package: trained on public data (RouteLLM's MMLU, GSM8K, MT-Bench)."""
    return Path(__file__).with_name("data") / "default-router.npz"


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a request goes: ``tier`` and its ``model``; ``confidence`` in the choice (0..1);
    ``fallback`` when the frontier was chosen because no cheaper tier cleared its bar or the router
    was unsure."""

    tier: str
    model: str
    confidence: float
    fallback: bool


class Router:
    """A loaded router: tiers, calibrated policy and classifier. Immutable, safe to share across threads."""

    def __init__(
        self, tiers: list[Tier], classifier: Classifier, policy: Policy, meta: dict[str, Any]
    ) -> None:
        if tuple(t.name for t in tiers) != policy.tiers:
            raise ValueError("the policy's tiers differ from the router's")
        self.tiers = tiers
        self.classifier = classifier
        self.policy = policy
        self.meta = meta
        self.embedding_model: str = str(meta.get("embedding", {}).get("model", MODEL_NAME))
        self._models = tuple(t.model for t in tiers)
        self._names = tuple(t.name for t in tiers)

    @classmethod
    def load(cls, path: Path | str) -> Router:
        return load_router(path)

    @property
    def embedding_int8(self) -> bool:
        """Whether the router was trained on int8 embeddings (``Embedder.load(..., int8=True)``, whose
        name ends in ``-int8``): the gateway should embed with the same kind, since int8 and float32
        vectors of one text differ (cosine ~0.995) and the classifier compares against stored ones."""
        return self.embedding_model.endswith("-int8")

    @property
    def expected_frontier_share(self) -> float | None:
        """The share of calls the policy sent to the frontier on held-out training rows: a live share far
        from it means the traffic differs from the training data (the calibration no longer holds)."""
        try:
            return float(self.meta["training"]["heldout"]["frontier_share"])
        except (KeyError, TypeError, ValueError):
            return None

    def with_policy(self, policy: Policy) -> Router:
        return Router(self.tiers, self.classifier, policy, self.meta)

    def route(
        self,
        embedding: npt.NDArray[np.float32],
        prompt: str,
        feature: str | None = None,
        history_len: int = 0,
    ) -> Decision:
        """Decide one request from its (DIM,) unit embedding (the semantic cache's), its query text,
        its feature name (matched against the training rows' categories) and its history length."""
        probs, nearest = self.classifier.predict_one(embedding, cheap_features(prompt, history_len), feature)
        index, confidence, fallback = self.policy.decide_index(probs, nearest < self.classifier.ood_floor)
        return Decision(self._names[index], self._models[index], confidence, fallback)

    def probabilities(
        self,
        embedding: npt.NDArray[np.float32],
        prompt: str,
        feature: str | None = None,
        history_len: int = 0,
    ) -> tuple[dict[str, float], bool]:
        """Each cheaper tier's probability of answering as well as the frontier, and whether unsure."""
        probs, nearest = self.classifier.predict_one(embedding, cheap_features(prompt, history_len), feature)
        named = {name: float(p) for name, p in zip(self._names, probs, strict=False)}
        return named, nearest < self.classifier.ood_floor


def save_router(path: Path | str, router: Router) -> int:
    """Write ``router`` to ``path`` (atomically: a temporary file, then a rename); returns its size."""
    path = Path(path)
    meta = dict(router.meta)
    meta.update(
        {
            "format": FORMAT,
            "version": VERSION,
            "tiers": [{"name": t.name, "model": t.model} for t in router.tiers],
            "bars": list(router.policy.bars),
            "features": list(FEATURE_NAMES),
            "classifier": router.classifier.meta(),
        }
    )
    meta.setdefault("embedding", {"model": MODEL_NAME, "dim": DIM})
    arrays = router.classifier.arrays()
    buffer = io.BytesIO()
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez_compressed(buffer, allow_pickle=False, **arrays)
    data = buffer.getvalue()
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return len(data)


def load_router(path: Path | str) -> Router:
    """Read a router file; `RouterFileError` (path and reason) for anything that makes it unusable."""
    path = Path(path)
    if not path.exists():
        raise RouterFileError(path, "no such file")
    if not path.is_file():
        raise RouterFileError(path, "not a file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise RouterFileError(path, f"not a router file (a NumPy .npz archive): {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise RouterFileError(path, "not a router file: a single NumPy array, not an .npz archive")
    try:
        arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error) as exc:
        raise RouterFileError(path, f"corrupt archive: {exc}") from None
    finally:
        archive.close()
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except KeyError:
        raise RouterFileError(path, "no 'meta' record: not a FareGate router file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RouterFileError(path, f"its 'meta' record is not JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RouterFileError(path, "not a FareGate router file (no 'faregate-router' format marker)")
    if meta.get("version") != VERSION:
        raise RouterFileError(
            path, f"format version {meta.get('version')!r}; this FareGate reads version {VERSION}: retrain it"
        )
    if meta.get("features") != list(FEATURE_NAMES):
        raise RouterFileError(
            path, "trained on another set of cheap features than this FareGate's: retrain it"
        )
    embedding = meta.get("embedding") or {}
    if embedding.get("dim") != DIM:
        raise RouterFileError(
            path, f"trained on {embedding.get('dim')}-wide embeddings; the gateway's are {DIM}"
        )
    try:
        tiers = [Tier(str(t["name"]), str(t["model"])) for t in meta["tiers"]]
        policy = Policy(tuple(t.name for t in tiers), tuple(float(b) for b in meta["bars"]))
        classifier = Classifier.from_arrays(arrays, meta["classifier"])
        if classifier.tiers != len(tiers):
            raise ValueError(f"the classifier has {classifier.tiers} tiers, the file names {len(tiers)}")
        if classifier.dim != DIM:
            raise ValueError(f"the classifier reads {classifier.dim}-wide embeddings, not {DIM}")
        return Router(tiers, classifier, policy, meta)
    except KeyError as exc:
        raise RouterFileError(path, f"missing {exc}") from None
    except (TypeError, ValueError) as exc:
        raise RouterFileError(path, f"inconsistent contents: {exc}") from None
