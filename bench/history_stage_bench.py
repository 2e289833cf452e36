"""What the history stage adds to a request of a 50-turn conversation, embeddings included.

    .venv/bin/python bench/history_stage_bench.py [--iterations 300] [--turns 50] [--threads 1]

Each request runs through the real `HistoryStage` (SQLite history store in a temporary file, the
int8 embedding model the gateway uses for retrieval) with a stand-in upstream that answers at once;
the time from entering the stage to the upstream being called is what a request pays. The
conversation is real text: mt-bench-101 dialogues from ../shared/data when present (synthetic
sentences otherwise), `--turns` finished exchanges plus a new user question, a different question
every request (so the query embedding is never memoised). Before timing, one request per
conversation stores the turn vectors and the background embeddings are drained: the steady state
of a running chat, where only the new question is embedded on the request path.

Cases: `retrieve` K=4 R=4 (the goal: ≤ 2 ms p50), the same given the query embedding (memo hit, as
when the semantic cache embedded the text first), and `window` K=4 for reference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from anatomy_bench import percentile

from faregate.cache.embeddings import Embedder
from faregate.call import Attribution, Call, Result, Route
from faregate.config import HistorySettings
from faregate.history.sqlite_store import SqliteHistoryStore
from faregate.pipeline.history import HistoryStage

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "history" / "mt-bench-101.jsonl"
MODEL = "gpt-4o"


def turn_texts(n: int, rng: random.Random) -> list[str]:
    """2n message texts (user, assistant alternating) from real dialogues when available."""
    texts: list[str] = []
    if DATA.is_file():
        dialogues = [json.loads(line) for line in DATA.open(encoding="utf-8")]
        rng.shuffle(dialogues)
        for d in dialogues:
            texts += [t["content"] for t in d["turns"]]
            if len(texts) >= 2 * n + 400:
                break
    else:
        words = ["price", "return", "ticket", "Lisbon", "Porto", "season", "class", "the", "of"]
        texts = [" ".join(rng.choice(words) for _ in range(rng.randint(15, 120))) for _ in range(2 * n + 400)]
    return texts


def body(texts: list[str], turns: int, question: str) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a helpful assistant."}]
    for i in range(turns):
        messages += [
            {"role": "user", "content": texts[2 * i]},
            {"role": "assistant", "content": texts[2 * i + 1]},
        ]
    messages.append({"role": "user", "content": question})
    return {"model": MODEL, "messages": messages}


def call_for(b: dict[str, Any], conversation: str) -> Call:
    return Call(
        request_id="bench",
        protocol="openai",
        body=b,
        raw_body=b"",
        model_requested=MODEL,
        stream=False,
        headers={},
        attribution=Attribution(feature="chat", conversation=conversation),
        route=Route("openai", MODEL),
    )


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(7)
    texts = turn_texts(args.turns, rng)
    history_texts, questions = texts[: 2 * args.turns], texts[2 * args.turns :: 2]
    embedder = Embedder.load(None, threads=args.threads, int8=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteHistoryStore(Path(tmp) / "history.db")
        pool, background = ThreadPoolExecutor(2), ThreadPoolExecutor(1)
        entered = 0.0
        lapses: list[float] = []

        async def upstream(call: Call) -> Result:
            lapses.append(time.perf_counter() - entered)
            return Result(status=200, headers={})

        cases = {
            "retrieve K=4 R=4, query embedded on the path": HistorySettings(policy="retrieve"),
            "retrieve K=4 R=4, query embedding memoised": HistorySettings(policy="retrieve"),
            "window K=4": HistorySettings(policy="window"),
        }
        print(f"history stage, {args.turns}-exchange conversation, {args.iterations} requests a case")
        for label, settings in cases.items():
            stage = HistoryStage(
                {"chat": settings},
                store,
                lambda: embedder,
                pool,
                None,
                lambda call: None,
                background=background,
            )
            conversation = f"bench-{label}"
            await stage(call_for(body(history_texts, args.turns, "warm-up question"), conversation), upstream)
            await stage.drain()
            lapses.clear()
            memo = "memoised" in label
            for i in range(args.iterations):
                question = questions[i % len(questions)] + ("" if memo else f" ({i})")
                if memo:
                    embedder.embed_one(question)
                call = call_for(body(history_texts, args.turns, question), conversation)
                entered = time.perf_counter()
                await stage(call, upstream)
                await stage.drain()
            p50, p99 = percentile(lapses, 0.5) * 1000, percentile(lapses, 0.99) * 1000
            print(f"  {label:48s} p50 {p50:6.3f} ms  p99 {p99:6.3f} ms")
        store.close()
        pool.shutdown()
        background.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for the embedding")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
