"""Dashboard API over a big SQLite ledger: rollup maintenance cost on write, then each page's query.

    .venv/bin/python bench/dashboard_api_bench.py [--events 5000000] [--db /tmp/dash.db]

Writes synthetic events through `SqliteStore.write_batch` (so the rollup maintenance is measured,
nothing is inserted into the rollups directly): 30 days, 50 features (each owned by one of 10
teams), 5 template versions a feature with one or two live at a time, 2 cohorts, 20 models (2 a
feature), 100k users, a third of requests carrying a task id. Then it times each endpoint's store
query plus its JSON encoding, p50 of 5 runs. Goal: a page (2-3 endpoints) in <= 1 s.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from faregate.ledger.events import CostEvent
from faregate.ledger.sqlite import SqliteStore

DAY = 86400
FEATURES = [f"feature-{i:02d}" for i in range(50)]
MODELS = [f"model-{i:02d}" for i in range(20)]


def synthetic(n: int, start: float, span: float, rng: random.Random) -> CostEvent:
    f = rng.randrange(50)
    ts = start + span * n / TOTAL + rng.random()
    day = int((ts - start) // DAY)
    version = min(4, day // 7 + f % 2)
    if version and rng.random() < 0.15:
        version -= 1  # the previous template still serves some traffic after a rollout
    model = MODELS[(f + 7 * rng.randrange(2)) % 20]
    inp = rng.randrange(200, 4000)
    out = rng.randrange(10, 800)
    cost = inp * 150 + out * 600
    cache = rng.choice(("miss", "miss", "miss", "hit", "semantic-hit", None))
    shadow = rng.random() < 0.02
    return CostEvent(
        request_id=f"{n:012x}",
        ts=ts,
        feature=FEATURES[f],
        team=f"team-{f % 10}",
        template=f"{FEATURES[f]}-v{version}",
        cohort=("control", "treatment")[rng.randrange(2)],
        user=f"user-{rng.randrange(100_000)}",
        conversation="unattributed",
        task=f"task-{n // 3}" if n % 3 == 0 else "unattributed",
        protocol="openai",
        provider="openai",
        model_requested=model,
        model_used=model,
        stream=False,
        status=200 if rng.random() > 0.01 else 502,
        error_kind=None,
        input_tokens=inp,
        cached_tokens=inp // 4,
        cache_write_tokens=0,
        cache_write_1h_tokens=0,
        output_tokens=out,
        reasoning_tokens=0,
        usage_estimated=False,
        price_known=True,
        cost_nusd=0 if cache in ("hit", "semantic-hit") else cost,
        baseline_cost_nusd=cost + inp * 20,
        latency_ms=300.0,
        upstream_ms=280.0,
        cache_status=cache,
        tier=("small", "medium", "frontier")[rng.randrange(3)],
        system_tokens=inp // 4,
        tools_tokens=inp // 8,
        history_tokens=inp // 4,
        context_tokens=inp // 4,
        query_tokens=inp - inp // 4 * 3 - inp // 8 - 5,
        overhead_tokens=5,
        prompt_cache_saving_nusd=inp * 10,
        route_shadow_of=f"{n - 1:012x}" if shadow else None,
        route_agreed=rng.random() < 0.9 if shadow else None,
        routing_saving_nusd=rng.randrange(0, 50_000),
        history_saving_nusd=rng.randrange(0, 20_000),
    )


TOTAL = 0


def p50(fn: Callable[[], Any], runs: int = 5) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        size = len(orjson.dumps(fn()))
        times.append(time.perf_counter() - t)
    return statistics.median(times), size


def main() -> None:
    global TOTAL
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--db", type=Path, default=Path("/tmp/faregate-dashboard-bench.db"))
    parser.add_argument("--reuse", action="store_true", help="query an existing database, write nothing")
    args = parser.parse_args()
    TOTAL = args.events
    now = time.time()
    start = now - 30 * DAY
    if not args.reuse:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{args.db}{suffix}").unlink(missing_ok=True)
    store = SqliteStore(args.db)
    rng = random.Random(1)
    if not args.reuse:
        gen_s = write_s = 0.0
        for first in range(0, args.events, args.batch):
            t = time.perf_counter()
            batch = [
                synthetic(n, start, 30 * DAY, rng) for n in range(first, min(first + args.batch, args.events))
            ]
            gen_s += time.perf_counter() - t
            t = time.perf_counter()
            store.write_batch(batch)
            write_s += time.perf_counter() - t
            if (first // args.batch) % 100 == 0:
                print(
                    f"  {first + len(batch):>9,} events, {(first + len(batch)) / write_s:,.0f}/s", flush=True
                )
        print(
            f"wrote {args.events:,} events in {write_s:.1f} s ({args.events / write_s:,.0f} events/s "
            f"with rollups; generating them took {gen_s:.1f} s)"
        )
        t = time.perf_counter()
        for _ in range(20_000):  # outcomes for some of the tasks
            task = rng.randrange(args.events // 3)
            store.record_task(
                f"task-{task}",
                FEATURES[rng.randrange(50)],
                rng.choice(("success", "failure")),
                None,
                start + 30 * DAY * task * 3 / args.events,
            )
        print(f"recorded 20,000 task outcomes in {time.perf_counter() - t:.1f} s")
    for table in ("events", "rollup_hourly", "rollup_users_daily", "rollup_dau", "task_outcomes"):
        ((count,),) = store._execute(f"SELECT COUNT(*) FROM {table}", ())
        print(f"{table:>20}: {count:>10,} rows")
    until = now + 3600
    since = until - 30 * DAY
    feature = FEATURES[3]
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("overview 30 d (day buckets)", lambda: store.overview(since, until)),
        ("overview 48 h (hour buckets)", lambda: store.overview(until - 2 * DAY, until)),
        ("attribution by feature 30 d", lambda: store.attribution("feature", since, until)),
        ("attribution by team 30 d", lambda: store.attribution("team", since, until)),
        (
            "attribution by template, feature=",
            lambda: store.attribution("template", since, until, {"feature": feature}),
        ),
        ("attribution by model, team=", lambda: store.attribution("model", since, until, {"team": "team-3"})),
        (
            "attribution by user, feature= (rollup)",
            lambda: store.attribution("user", since, until, {"feature": feature}),
        ),
        ("attribution by user 30 d (rollup)", lambda: store.attribution("user", since, until)),
        ("unit economics 30 d", lambda: store.unit_economics(since, until)),
        ("templates 30 d (all features)", lambda: store.templates(since, until)),
        ("templates 30 d, feature=", lambda: store.templates(since, until, feature)),
        ("anatomy 30 d", lambda: store.anatomy(since, until)),
    ]
    print(f"{'query (p50 of 5, incl. JSON encoding)':<42} {'ms':>8} {'bytes':>9}")
    for name, fn in cases:
        seconds, size = p50(fn)
        print(f"{name:<42} {seconds * 1000:>8.1f} {size:>9,}")
    store.close()


if __name__ == "__main__":
    main()
