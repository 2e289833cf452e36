import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from faregate.errors import ConfigError
from faregate.routing.artifact import (
    Decision,
    Router,
    RouterFileError,
    default_router_path,
    load_router,
    save_router,
)
from faregate.routing.features import cheap_features
from tests.routing.helpers import FRONTIER, SMALL, synthetic_router


def test_round_trip_gives_the_same_decisions(tmp_path: Path) -> None:
    router, emb, prompts = synthetic_router()
    path = tmp_path / "router.npz"
    size = save_router(path, router)
    assert size == path.stat().st_size
    loaded = Router.load(path)
    assert [t.model for t in loaded.tiers] == [SMALL, FRONTIER]
    assert loaded.policy == router.policy
    for i in range(40):
        a = router.route(emb[i], prompts[i])
        b = loaded.route(emb[i], prompts[i])
        assert (a.tier, a.model, a.fallback) == (b.tier, b.model, b.fallback)
        assert a.confidence == pytest.approx(b.confidence, abs=2e-3)  # keys are stored as float16


def test_route_sends_hard_prompts_to_the_frontier() -> None:
    router, emb, prompts = synthetic_router()
    decisions = [router.route(emb[i], prompts[i]) for i in range(len(prompts))]
    hard = np.array([p.startswith("hard") for p in prompts])
    to_frontier = np.array([d.tier == "frontier" for d in decisions])
    assert to_frontier[hard].mean() > 0.8 > 0.2 > to_frontier[~hard].mean()
    assert all(isinstance(d, Decision) and 0.0 <= d.confidence <= 1.0 for d in decisions)
    assert all(d.fallback for d in decisions if d.tier == "frontier")


def test_unsure_goes_to_the_frontier() -> None:
    router, emb, prompts = synthetic_router()
    easy = next(i for i, p in enumerate(prompts) if p.startswith("easy"))
    assert router.route(emb[easy], prompts[easy]).tier == "small"
    # a direction unlike every training prompt: the classifier is unsure, the frontier answers
    stranger = np.random.default_rng(5).normal(size=emb.shape[1]).astype(np.float32)
    stranger /= np.linalg.norm(stranger)
    probs, unsure = router.probabilities(stranger, prompts[easy])
    assert unsure
    decision = router.route(stranger, prompts[easy])
    assert (decision.tier, decision.confidence, decision.fallback) == ("frontier", 0.0, True)
    assert set(probs) == {"small"}


def test_missing_and_corrupt_files_name_the_path_and_reason(tmp_path: Path) -> None:
    missing = tmp_path / "nope.npz"
    with pytest.raises(RouterFileError, match=r"nope\.npz: no such file") as info:
        load_router(missing)
    assert info.value.path == missing and info.value.reason == "no such file"
    assert isinstance(info.value, ConfigError)  # `serve` refuses to start on it like on any config error

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all" * 10)
    with pytest.raises(RouterFileError, match=r"garbage\.npz: not a router file"):
        load_router(garbage)

    router, _, _ = synthetic_router()
    good = tmp_path / "good.npz"
    save_router(good, router)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(RouterFileError, match=r"truncated\.npz"):
        load_router(truncated)

    plain = tmp_path / "plain.npz"
    np.savez(plain, x=np.zeros(3))
    with pytest.raises(RouterFileError, match="no 'meta' record"):
        load_router(plain)

    with pytest.raises(RouterFileError, match="not a file"):
        load_router(tmp_path)


def _rewrite(src: Path, dst: Path, edit_meta=None, drop: str | None = None) -> Path:  # type: ignore[no-untyped-def]
    with np.load(src) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(arrays.pop("meta").tobytes())
    if edit_meta:
        edit_meta(meta)
    if drop:
        arrays.pop(drop)
    np.savez(dst, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return dst


def test_inconsistent_contents_are_refused(tmp_path: Path) -> None:
    router, _, _ = synthetic_router()
    good = tmp_path / "good.npz"
    save_router(good, router)
    cases = {
        "version": (lambda m: m.update(version=99), None, "format version 99"),
        "features": (lambda m: m["features"].pop(), None, "another set of cheap features"),
        "dim": (lambda m: m["embedding"].update(dim=768), None, "768-wide embeddings"),
        "tiers": (lambda m: m["tiers"].pop(0), None, "inconsistent contents"),
        "array": (None, "weights", "missing 'weights'"),
    }
    for name, (edit, drop, message) in cases.items():
        path = _rewrite(good, tmp_path / f"{name}.npz", edit, drop)
        with pytest.raises(RouterFileError, match=message):
            load_router(path)
    with zipfile.ZipFile(good) as z:
        assert "meta.npy" in z.namelist()


def test_embedding_int8_follows_the_meta(tmp_path: Path) -> None:
    router, _, _ = synthetic_router()
    assert "embedding" not in router.meta  # an older file: float32 MiniLM
    assert router.embedding_model == "all-MiniLM-L6-v2" and not router.embedding_int8
    for model, int8 in (("all-MiniLM-L6-v2-int8", True), ("all-MiniLM-L6-v2", False), ("my-model", False)):
        meta = {**router.meta, "embedding": {"model": model, "dim": 384}}
        path = tmp_path / f"{model}.npz"
        save_router(path, Router(router.tiers, router.classifier, router.policy, meta))
        loaded = load_router(path)
        assert (loaded.embedding_model, loaded.embedding_int8) == (model, int8)
        assert loaded.with_policy(loaded.policy).embedding_int8 is int8


def test_the_default_router_ships_and_routes() -> None:
    path = default_router_path()
    assert path.is_file() and path.stat().st_size < 5_000_000
    router = load_router(path)
    # trained on the int8 MiniLM's vectors (bench/routing_default.py): the gateway embeds with int8
    assert router.embedding_model == "all-MiniLM-L6-v2-int8" and router.embedding_int8
    assert [t.name for t in router.tiers] == ["small", "frontier"]
    assert router.tiers[0].model == "mistralai/Mixtral-8x7B-Instruct-v0.1"
    assert router.tiers[1].model == "gpt-4-1106-preview"
    share = router.expected_frontier_share
    assert share is not None and 0.2 < share < 0.7
    rng = np.random.default_rng(0)
    emb = rng.normal(size=384).astype(np.float32)
    emb /= np.linalg.norm(emb)
    decision = router.route(emb, "What is 2 + 2?")
    assert decision.tier in {"small", "frontier"}
    assert router.classifier.predict_one(emb, cheap_features("What is 2 + 2?"), None)[0].shape == (1,)
