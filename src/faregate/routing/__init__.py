"""Model routing: features, classifier, training, calibration and evaluation (APGR, CPT).

The gateway needs `Router` (``Router.load(path)``, ``router.route(embedding, prompt, feature,
history_len) -> Decision``; ``router.embedding_int8`` says whether to embed with
``Embedder.load(None, int8=True)``, as the shipped router expects, or with float32),
`default_router_path` and `RouterFileError`, all from `faregate.routing.artifact`; the CLI's
``faregate router train | eval`` is `faregate.routing.command`'s ``router_app``. The names below load
on first use, so that mounting the CLI imports no NumPy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faregate.routing.artifact import Decision, Router, RouterFileError, default_router_path, load_router

__all__ = ["Decision", "Router", "RouterFileError", "default_router_path", "load_router"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from faregate.routing import artifact

        return getattr(artifact, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
