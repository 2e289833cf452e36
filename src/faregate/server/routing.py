"""The gateway's routing state: the router file, the stage, and the refusal to start without them.

Routing is on when `routing.tiers` is set. The router is loaded when the gateway is built, so a
missing or corrupt file stops `faregate serve` before it takes traffic, with the path and the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from faregate.call import Call, Result
from faregate.config import Config
from faregate.errors import ConfigError
from faregate.pipeline.base import Next
from faregate.pipeline.route import ModelCatalogue
from faregate.pipeline.router import RouterStage
from faregate.server.embedding import SharedEmbedder


def build_router_stage(
    config: Config,
    *,
    catalogue: ModelCatalogue,
    embedder: SharedEmbedder,
    executor: ThreadPoolExecutor,
    upstream: Next,
    settle: Callable[[Call, Result], None],
    new_request_id: Callable[[], str],
) -> RouterStage | None:
    settings = config.routing
    if not settings.tiers:
        return None
    from faregate.routing.artifact import default_router_path, load_router

    path = settings.router or default_router_path()
    router = load_router(path)  # RouterFileError (a ConfigError): path and reason
    unknown = [t.name for t in router.tiers if t.name not in settings.tiers]
    if unknown:
        configured = ", ".join(sorted(settings.tiers))
        raise ConfigError(
            f"routing.router {path}: routes to tier(s) {', '.join(unknown)} that routing.tiers does not "
            f"configure ({configured})"
        )
    # The shipped router was trained on int8 embeddings (a query embeds ~3x faster); one trained on
    # float32 gets float32. Either way the semantic cache's float32 embedding is reused when that
    # stage computed one: the two kinds agree to cosine ~0.994 and move APGR by < 0.005.
    int8 = router.embedding_int8
    embedder.require("routing.tiers (the router)", int8=int8)
    if settings.shadow_fraction > 0:
        embedder.require("routing.shadow_fraction (comparing answers)")
    return RouterStage(
        router,
        settings.tiers,
        {name for name, feature in config.features.items() if feature.routing},
        catalogue,
        embedder.get_int8 if int8 else embedder.get,
        executor,
        shadow_fraction=settings.shadow_fraction,
        answer_embedder=embedder.get,
        shadow=upstream,
        settle=settle,
        new_request_id=new_request_id,
    )
