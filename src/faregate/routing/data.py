"""Routing-outcome lines: reading them, naming the tiers, and the quality and cost of each tier per row.

One JSON object a line: ``{"prompt", "category", "scores": {model: 0..1}, "costs": {model: usd}?}``,
optionally ``"history_len"`` (turns before the prompt) and ``"id"``. ``scores`` says how well each model
answered the prompt (1 = right, 0 = wrong, or a judge's grade scaled to 0..1); ``costs``, when present,
what each model's answer cost.

Where a row has no cost for a model, the cost is estimated from the model's current price (genai-prices,
via `faregate.pricing.PriceBook`) for the prompt's tokens in and `ASSUMED_OUTPUT_TOKENS` out; a model
name that genai-prices does not know is retried without its organisation prefix
(``mistralai/Mixtral-8x7B-Instruct-v0.1`` -> ``Mixtral-8x7B-Instruct-v0.1``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson

__all__ = [
    "ASSUMED_OUTPUT_TOKENS",
    "BadData",
    "Row",
    "Tier",
    "cost_matrix",
    "parse_tiers",
    "price_per_token",
    "quality_matrix",
    "read_rows",
]

ASSUMED_OUTPUT_TOKENS = 256
_CHARS_PER_TOKEN = 4.0


class BadData(ValueError):
    """Training or evaluation input that cannot be used; the CLI prints it and exits with code 2."""


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    model: str


@dataclass(frozen=True, slots=True)
class Row:
    prompt: str
    category: str
    scores: dict[str, float]
    costs: dict[str, float] | None = None
    history_len: int = 0


def parse_tiers(spec: str) -> list[Tier]:
    """``small=MODEL[,medium=MODEL],frontier=MODEL`` -> tiers, cheapest first, the last one the frontier."""
    tiers: list[Tier] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, model = part.partition("=")
        name, model = name.strip(), model.strip()
        if not sep or not name or not model:
            raise BadData(f"--tiers: {part!r} is not NAME=MODEL (e.g. small=gpt-4o-mini,frontier=gpt-4o)")
        if any(t.name == name for t in tiers):
            raise BadData(f"--tiers: tier {name!r} is named twice")
        tiers.append(Tier(name, model))
    if len(tiers) < 2:
        raise BadData("--tiers: name at least two tiers, cheapest first and the frontier last")
    if tiers[-1].name != "frontier":
        raise BadData(f"--tiers: the last tier must be 'frontier' (got {tiers[-1].name!r})")
    if len({t.model for t in tiers}) != len(tiers):
        raise BadData("--tiers: each tier needs its own model")
    return tiers


def read_rows(paths: Iterable[Path]) -> list[Row]:
    """Read routing-outcome lines from each file; a malformed line is a `BadData` naming file and line."""
    rows: list[Row] = []
    for path in paths:
        try:
            text = Path(path).read_bytes()
        except OSError as exc:
            raise BadData(f"{path}: cannot read: {exc.strerror or exc}") from None
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(_row(orjson.loads(line)))
            except (orjson.JSONDecodeError, TypeError, ValueError, KeyError) as exc:
                raise BadData(f"{path}:{number}: not a routing-outcome line: {exc}") from None
    return rows


def _row(obj: object) -> Row:
    if not isinstance(obj, dict):
        raise TypeError("expected a JSON object")
    prompt = obj["prompt"]
    if not isinstance(prompt, str):
        raise TypeError('"prompt" must be a string')
    scores = _numbers(obj["scores"], "scores")
    for model, score in scores.items():
        if not 0.0 <= score <= 1.0:
            raise ValueError(f'"scores" for {model!r} is {score}, outside 0..1')
    costs_obj = obj.get("costs")
    costs = None if costs_obj is None else _numbers(costs_obj, "costs")
    if costs and any(c < 0 for c in costs.values()):
        raise ValueError('"costs" must not be negative')
    history = obj.get("history_len", 0)
    if not isinstance(history, int) or history < 0:
        raise TypeError('"history_len" must be a non-negative integer')
    category = obj.get("category") or ""
    return Row(prompt=prompt, category=str(category), scores=scores, costs=costs, history_len=history)


def _numbers(value: object, field: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise TypeError(f'"{field}" must be an object of model: number')
    out: dict[str, float] = {}
    for key, v in value.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise TypeError(f'"{field}" for {key!r} must be a finite number')
        out[str(key)] = float(v)
    return out


def quality_matrix(rows: Sequence[Row], tiers: Sequence[Tier]) -> npt.NDArray[np.float64]:
    """(rows, tiers) scores; `BadData` when a tier's model is missing from the rows' scores."""
    models = [t.model for t in tiers]
    seen: set[str] = set()
    for row in rows:
        seen.update(row.scores)
    unknown = [m for m in models if m not in seen]
    if unknown:
        known = ", ".join(sorted(seen)[:8]) or "none"
        raise BadData(f"unknown model(s) {', '.join(unknown)}: the data scores only {known}")
    out = np.empty((len(rows), len(models)), dtype=np.float64)
    for i, row in enumerate(rows):
        for j, model in enumerate(models):
            score = row.scores.get(model)
            if score is None:
                raise BadData(f"row {i + 1} has no score for {model}: every row needs one for every tier")
            out[i, j] = score
    return out


def cost_matrix(rows: Sequence[Row], tiers: Sequence[Tier]) -> npt.NDArray[np.float64]:
    """(rows, tiers) USD per call: a row's own ``costs`` where given, else an estimate at current prices."""
    rates: dict[str, tuple[float, float]] = {}
    out = np.empty((len(rows), len(tiers)), dtype=np.float64)
    for i, row in enumerate(rows):
        tokens_in = math.ceil(len(row.prompt) / _CHARS_PER_TOKEN)
        for j, tier in enumerate(tiers):
            given = row.costs.get(tier.model) if row.costs else None
            if given is not None:
                out[i, j] = given
                continue
            if tier.model not in rates:
                rates[tier.model] = price_per_token(tier.model)
            per_in, per_out = rates[tier.model]
            out[i, j] = tokens_in * per_in + ASSUMED_OUTPUT_TOKENS * per_out
    return out


def price_per_token(model: str) -> tuple[float, float]:
    """USD per input and per output token at genai-prices' bundled prices; `BadData` when unknown."""
    import genai_prices

    million = 1_000_000
    usage = genai_prices.Usage(input_tokens=million, output_tokens=million)
    for name in dict.fromkeys((model, model.split("/", 1)[-1])):
        try:
            price = genai_prices.calc_price(usage, model_ref=name)
        except LookupError:
            continue
        return float(price.input_price) / million, float(price.output_price) / million
    raise BadData(
        f'no price for model {model!r}: give each row a "costs" field, or use a model name genai-prices knows'
    )
