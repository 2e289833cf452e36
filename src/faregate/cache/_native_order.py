"""Load ONNX Runtime's native library before usearch's, whichever module asks first.

Importing `onnxruntime` after `usearch` has loaded its SIMD kernels (numkong) kills the process with a
segmentation fault (seen with usearch 2.26 and onnxruntime 1.32); in the other order both work. Every
module that imports usearch imports this module first, so the order holds however the package is
entered (the gateway, `faregate cache eval`, a test).
"""

from __future__ import annotations

import contextlib

with contextlib.suppress(ImportError):  # ONNX Runtime is optional: the embedder falls back to NumPy
    import onnxruntime  # noqa: F401
