"""The embedder's BERT forward pass as an ONNX graph, built in memory and run by ONNX Runtime.

Why: a query is ~0.3 GFLOP of matrix products with only ~15 rows, and OpenBLAS (NumPy's sgemm) is
slow at so few rows; ONNX Runtime's MLAS kernels, with weights pre-packed once at load, make a query
~1.6x faster on one core (3.6 ms against 5.9 ms p50, bench/embedding_bench.py), and its graph runs the
whole encoder in one C++ call, not ~200 NumPy calls. The sgemms are ~85% of ORT's time; ORT's fused
contrib ops (Attention, SkipLayerNormalization, BiasGelu) measured no faster, so the graph keeps to
standard ops.

No model file is shipped or written: the graph is built here with ``onnx.helper`` from the same NumPy
weights that `faregate.cache.embeddings` prepares (query pre-scaled, one fused QKV matrix a layer),
with the batch size and the token count left dynamic. Only standard ONNX ops are used (opset 20:
MatMul, Add, Softmax, LayerNormalization, exact erf-based Gelu), so the result is the NumPy path's to
float32 rounding (max abs difference ~3e-7 on unit vectors); ORT's own graph optimisations run on top.
The weights do not go through the protobuf: each initializer is declared as external data and handed
to ORT as an `OrtValue` over the NumPy array (`add_external_initializers`), which ORT copies once into
its own buffers, so loading needs no 90 MB protobuf message nor its serialised copy.

Threads: one intra-op thread by default, and never spin-waiting. On an idle 2-core machine two
threads make a query ~1.6x faster (p50 2.1 ms against 3.5 ms, for ~5% more CPU); but when another
process holds a core, as it usually does on our shared machines, two were 6-22% slower at p50 and no
better at p99, and with ORT's default spin-waiting twice as slow (7.5 ms). More threads are opt-in
(`Embedder.load`'s ``threads``; ``bench/embedding_bench.py --threads 2`` measures them).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto, TensorProto

    from faregate.cache.embeddings import F32, BertWeights

_OPSET = 20  # the first with an exact (erf) Gelu op
_IR_VERSION = 9  # what opset 20 needs; ORT 1.17+ reads it


def available() -> bool:
    """True when both `onnx` (to build the graph) and `onnxruntime` (to run it) are installed.

    Found without importing either, so that choosing a backend costs nothing when they are absent.
    """
    return find_spec("onnx") is not None and find_spec("onnxruntime") is not None


class _Builder:
    """Collects nodes, small inline constants and the big weights (kept aside as external data)."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self._helper = helper
        self._numpy_helper = numpy_helper
        self.nodes: list[NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.external: dict[str, npt.NDArray[Any]] = {}
        self._count = 0

    def const(self, name: str, value: npt.ArrayLike) -> str:
        """A small constant (shape, axes, scalar), stored inline in the graph."""
        self.initializers.append(self._numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, name: str, array: F32) -> str:
        """A weight: the graph holds only its name, type and shape; ORT gets the array at load."""
        from onnx import TensorProto

        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=array.shape)
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", "in-memory"), ("offset", "0"), ("length", str(array.nbytes))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        self.initializers.append(tensor)
        self.external[name] = np.ascontiguousarray(array, dtype=np.float32)
        return name

    def op(self, op_type: str, inputs: Sequence[str], n_out: int = 1, **attrs: Any) -> list[str]:
        self._count += 1
        outputs = [f"{op_type}_{self._count}_{i}" for i in range(n_out)]
        self.nodes.append(self._helper.make_node(op_type, list(inputs), outputs, **attrs))
        return outputs

    def __call__(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        """Add a one-output node and return its output's name."""
        return self.op(op_type, inputs, **attrs)[0]


def build_graph(weights: BertWeights) -> tuple[ModelProto, dict[str, npt.NDArray[Any]]]:
    """The encoder, mean pooling and L2 normalisation as an ONNX model, and its weights by name.

    Inputs: ``input_ids`` int64 (batch, tokens) and ``mask`` float32 (batch, tokens), 1 for a real
    token, 0 for padding; output ``embedding`` float32 (batch, 384). The hidden state is kept 2-D,
    (batch * tokens, 384), so every projection is a single sgemm; attention reshapes around it.
    """
    from onnx import TensorProto, helper

    dim = weights.word.shape[1]
    heads, size, eps = weights.heads, dim // weights.heads, weights.eps
    g = _Builder()
    flat = g.const("flat", np.array([-1, dim], np.int64))
    batch_tokens = g("Shape", "input_ids")
    tokens = g("Shape", "input_ids", start=1, end=2)
    positions = g("Slice", g.weight("pos", weights.pos), g.const("zero", np.array([0], np.int64)), tokens)
    x = g("Add", g("Gather", g.weight("word", weights.word), "input_ids"), positions)
    x = _layer_norm(g, g("Reshape", x, flat), "emb.ln", weights.emb_ln, eps)
    # padding gets -1e9 before the softmax, whose exp() is exactly 0 in float32, as in the NumPy path
    bias = g("Mul", g("Sub", g.const("one", np.float32(1.0)), "mask"), g.const("neg", np.float32(-1e9)))
    bias = g("Unsqueeze", bias, g.const("axes_1_2", np.array([1, 2], np.int64)))  # (batch, 1, 1, tokens)
    qkv_shape = g("Concat", batch_tokens, g.const("qkv_dims", np.array([3, heads, size], np.int64)), axis=0)
    for i, layer in enumerate(weights.layers):
        p = f"layer{i}."
        qkv = g("Add", g("MatMul", x, g.weight(p + "wqkv", layer.wqkv)), g.weight(p + "bqkv", layer.bqkv))
        # (batch, tokens, 3, heads, size) -> (3, batch, heads, tokens, size); Q is pre-scaled
        qkv = g("Transpose", g("Reshape", qkv, qkv_shape), perm=[2, 0, 3, 1, 4])
        q, k, v = g.op("Split", [qkv], n_out=3, axis=0, num_outputs=3)
        scores = g("Add", g("MatMul", q, g("Transpose", k, perm=[0, 1, 2, 4, 3])), bias)
        context = g("MatMul", g("Softmax", scores, axis=-1), v)  # (1, batch, heads, tokens, size)
        context = g("Reshape", g("Transpose", context, perm=[0, 1, 3, 2, 4]), flat)
        h = g("Add", g("MatMul", context, g.weight(p + "wo", layer.wo)), g.weight(p + "bo", layer.bo))
        x = _layer_norm(g, g("Add", h, x), p + "ln1", (layer.ln1_g, layer.ln1_b), eps)
        f = g("Add", g("MatMul", x, g.weight(p + "wi", layer.wi)), g.weight(p + "bi", layer.bi))
        h = g("MatMul", g("Gelu", f, approximate="none"), g.weight(p + "wf", layer.wf))
        h = g("Add", h, g.weight(p + "bf", layer.bf))
        x = _layer_norm(g, g("Add", h, x), p + "ln2", (layer.ln2_g, layer.ln2_b), eps)
    hidden_shape = g("Concat", batch_tokens, g.const("hidden_dim", np.array([dim], np.int64)), axis=0)
    x = g("Reshape", x, hidden_shape)  # (batch, tokens, dim)
    axis1 = g.const("axis1", np.array([1], np.int64))
    mask3 = g("Unsqueeze", "mask", g.const("axis2", np.array([2], np.int64)))  # (batch, tokens, 1)
    summed = g("ReduceSum", g("Mul", x, mask3), axis1)
    counts = g("Max", g("ReduceSum", "mask", axis1), g.const("min_count", np.float32(1e-9)))
    pooled = g("Div", g("Squeeze", summed, axis1), counts)
    norm = g("Max", g("ReduceL2", pooled, axis1), g.const("min_norm", np.float32(1e-12)))
    g.op("Div", [pooled, norm])
    g.nodes[-1].output[0] = "embedding"

    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        g.initializers,
    )
    opsets = [helper.make_opsetid("", _OPSET)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=_IR_VERSION, producer_name="faregate")
    return model, g.external


def _layer_norm(g: _Builder, x: str, prefix: str, gain_bias: tuple[F32, F32], eps: float) -> str:
    gain, bias = g.weight(prefix + ".gain", gain_bias[0]), g.weight(prefix + ".bias", gain_bias[1])
    return g("LayerNormalization", x, gain, bias, axis=-1, epsilon=eps)


class OnnxBert:
    """A forward pass like `faregate.cache.embeddings`' NumPy one: (ids, mask or None) -> unit rows.

    ``InferenceSession.run`` is thread-safe and releases the GIL, so one instance serves every thread.
    The NumPy weights are not kept: ORT has its own copy (pre-packed for its sgemm).
    """

    # no padding of a lone query: unlike OpenBLAS, MLAS is as fast at 15 rows as at 16 (measured)
    align = 1

    def __init__(self, weights: BertWeights, *, threads: int = 1, int8: bool = False) -> None:
        import onnxruntime as ort

        model, external = build_graph(weights)
        if int8:
            model, external = quantized(model, external), {}
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # a pool thread that spins for work steals the core it waits for when the machine is busy
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: no start-up chatter on stderr
        # ORT copies the arrays while the session loads, then drops these references
        if external:
            options.add_external_initializers(
                list(external), [ort.OrtValue.ortvalue_from_numpy(a) for a in external.values()]
            )
        self._session: Any = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )

    def __call__(self, ids: npt.NDArray[np.int64], mask: F32 | None) -> F32:
        """Embed (batch, tokens) ids; mask None means no padding."""
        if mask is None:
            mask = np.ones(ids.shape, dtype=np.float32)
        out: F32 = self._session.run(None, {"input_ids": ids, "mask": mask})[0]
        return out


def quantized(model: ModelProto, external: dict[str, npt.NDArray[Any]]) -> ModelProto:
    """The graph with its weight matrices in int8 (per output channel), activations quantized per call.

    For the history stage's retrieval, where a query must embed in well under 2 ms: on the 2-core
    machine a 25-token query takes ~1.6 ms instead of ~5 ms on one thread, and its vector keeps a
    cosine of ~0.995 to the float32 one (per-tensor scales only reached 0.97). Rankings are what
    retrieval needs; the semantic cache keeps float32, whose threshold was chosen on float32 vectors.
    ORT's quantizer works on files, so the graph passes through a temporary directory once, at load.
    """
    from onnx import TensorProto, numpy_helper

    for tensor in model.graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL:
            tensor.CopyFrom(numpy_helper.from_array(external[tensor.name], tensor.name))
    # The quantizer warns on the root logger that the model was not pre-processed (shape inference
    # for a dynamic graph): true and harmless here, and not for the gateway's log.
    logging.disable(logging.WARNING)
    try:
        return _quantize_files(model)
    finally:
        logging.disable(logging.NOTSET)


def _quantize_files(model: ModelProto) -> ModelProto:
    import tempfile
    from pathlib import Path

    from onnx import load, save
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="faregate-int8-") as tmp:
        source, target = Path(tmp) / "float32.onnx", Path(tmp) / "int8.onnx"
        save(model, source)
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"MatMulConstBOnly": True},
        )
        return load(target)
