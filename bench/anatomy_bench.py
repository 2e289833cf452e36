"""Benchmark `faregate.anatomy.dissect`: the gateway path and the offline analyzer's workload.

    .venv/bin/python bench/anatomy_bench.py [--iterations 300] [--model gpt-4o]

Bodies are built from real English prose (the standard library's docstrings) and parsed from JSON
bytes before every call, as the gateway does, so string hashes are never cached between calls. Only
`dissect` is timed. Cases:

- warm, new query: a ~10,000-token request (system prompt, tools, 12 history messages) whose earlier
  parts were counted before; only the ~100-token last user turn is new;
- warm, new query + new context: the same with ~3,000 tokens of new `<context>` in the last turn;
- warm, repeated context: a new query around retrieved documents that were seen before;
- cold: the memo cleared before each call, so everything is encoded;
- tiktoken alone: encoding the new text of each case once, the floor under the warm cases;
- offline: multi-turn conversations over a few repeated system prompts, interleaved as in a log,
  each request the full history so far; microseconds per request for the whole stream with the memo
  starting empty ("dissect"), for a second pass where every segment was seen ("all seen": the
  per-request overhead), and for encoding the stream's distinct text once ("new text alone": the
  floor). With more concurrent conversations than tokens.py's memo holds (8M characters), an
  interleaved log thrashes it; grouped by conversation, it does not.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import orjson

from faregate import tokens
from faregate.anatomy import dissect

MODULES = (
    "argparse",
    "asyncio",
    "calendar",
    "collections",
    "configparser",
    "contextlib",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "email",
    "enum",
    "fractions",
    "functools",
    "heapq",
    "http.client",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "logging",
    "mailbox",
    "operator",
    "optparse",
    "os",
    "pathlib",
    "pickle",
    "pprint",
    "queue",
    "random",
    "re",
    "sched",
    "shlex",
    "shutil",
    "smtplib",
    "socket",
    "sqlite3",
    "ssl",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "timeit",
    "tokenize",
    "typing",
    "unittest",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "weakref",
    "zipfile",
)


def corpus() -> list[str]:
    """Paragraphs of real English (technical prose) from docstrings, in a fixed order."""
    seen: dict[str, None] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in MODULES:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            for _, obj in sorted(inspect.getmembers(module), key=lambda item: item[0]):
                doc = getattr(obj, "__doc__", None)
                if isinstance(doc, str) and len(doc) > 120:
                    for paragraph in inspect.cleandoc(doc).split("\n\n"):
                        if len(paragraph) > 60:
                            seen.setdefault(paragraph, None)
    return list(seen)


class Text:
    """Hands out consecutive paragraphs until a token target is met; never repeats text."""

    def __init__(self, model: str) -> None:
        self.paragraphs = corpus()
        self.position = 0
        self.model = model

    def take(self, target_tokens: int) -> str:
        out: list[str] = []
        got = 0
        while got < target_tokens:
            paragraph = self.paragraphs[self.position % len(self.paragraphs)]
            if self.position >= len(self.paragraphs):  # ran out: make it new text anyway
                paragraph = f"({self.position}) {paragraph}"
            self.position += 1
            out.append(paragraph)
            got += tokens.count_text(self.model, paragraph)
        return "\n\n".join(out)


def tool_definitions(text: Text, n: int = 8) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": f"tool_{i}",
                "description": text.take(80),
                "parameters": {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string", "description": text.take(20)},
                        "limit": {"type": "integer", "minimum": 1, "maximum": 50},
                    },
                    "required": ["query"],
                },
            },
        }
        for i in range(n)
    ]


def history(text: Text, turns: int, tokens_per_message: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for i in range(turns):
        messages.append({"role": "user", "content": text.take(tokens_per_message // 4)})
        if i == turns // 2:  # one tool round trip in the middle of the history
            call = {"id": f"call_{i}", "type": "function", "function": {"name": "tool_1", "arguments": "{}"}}
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            messages.append({"role": "tool", "tool_call_id": f"call_{i}", "content": text.take(400)})
        messages.append({"role": "assistant", "content": text.take(tokens_per_message * 7 // 4)})
    return messages


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(
    label: str, bodies: list[bytes], model: str, prepare: Callable[[], None] | None = None
) -> tuple[str, float, float, int]:
    samples = []
    total = 0
    for raw in bodies:
        body = orjson.loads(raw)
        if prepare is not None:
            prepare()
        start = time.perf_counter()
        view = dissect("openai", model, body)
        samples.append((time.perf_counter() - start) * 1e6)
        total = view.anatomy.total()
    return label, percentile(samples, 0.5), percentile(samples, 0.99), total


def gateway_cases(model: str, iterations: int) -> list[tuple[str, float, float, int]]:
    text = Text(model)
    system = {"role": "system", "content": text.take(2000)}
    tools = tool_definitions(text, n=6)
    earlier = history(text, turns=6, tokens_per_message=400)
    documents = [text.take(300) for _ in range(10)]
    prefix = {"model": model, "tools": tools, "messages": [system, *earlier]}

    def body(last_turn: str) -> bytes:
        return orjson.dumps(
            {**prefix, "messages": [*prefix["messages"], {"role": "user", "content": last_turn}]}
        )

    queries = [text.take(100) for _ in range(iterations)]
    contexts = [text.take(3000) for _ in range(iterations)]
    new_query = [body(q) for q in queries]
    new_context = [
        body(f"{q}\n\n<context>\n{c}\n</context>\n\nAnswer from the context.")
        for q, c in zip(queries, contexts, strict=True)
    ]
    seen_docs = [
        body(
            "<documents>\n"
            + "".join(f'<document source="kb">\n{documents[(i + k) % 10]}\n</document>\n' for k in range(3))
            + f"</documents>\n\n{q}"
        )
        for i, q in enumerate(queries)
    ]
    cold = [body(q) for q in queries]

    tokens._memo.clear()
    dissect("openai", model, orjson.loads(body("warm-up question")))  # system, tools, history memoised
    for doc in documents:  # the knowledge base's documents were retrieved before
        dissect(
            "openai", model, orjson.loads(body(f'<documents>\n<document source="kb">\n{doc}\n</document>\n'))
        )
    results = [
        timed("warm, new 100-token query", new_query, model),
        timed("warm, new query + new 3k-token context", new_context, model),
        timed("warm, new query + 3 documents seen before", seen_docs, model),
        timed("cold (memo cleared before each call)", cold, model, prepare=tokens._memo.clear),
    ]
    encoding = tokens.encoding_for_model(model)
    for label, texts in (
        ("tiktoken alone: the new 100-token query", queries),
        ("tiktoken alone: the new 3k-token context", contexts),
    ):
        samples = []
        for t in texts:
            fresh = "".join(list(t))
            start = time.perf_counter()
            encoding.encode_ordinary(fresh)
            samples.append((time.perf_counter() - start) * 1e6)
        results.append((label, percentile(samples, 0.5), percentile(samples, 0.99), 0))
    return results


def offline_case(model: str, conversations: int, grouped: bool, turns: int = 16) -> dict[str, float]:
    """A log of multi-turn conversations over 4 system prompts (features), each request carrying the
    whole conversation so far, every fourth turn with retrieved context; requests interleaved by time
    as a log has them, or `grouped` by conversation (sorted before the analysis).
    """
    text = Text(model)
    systems = [text.take(1500) for _ in range(4)]
    tools = tool_definitions(text, n=6)
    logs: list[list[bytes]] = []
    new_text: list[str] = list(systems)  # every text that is new somewhere in the stream, once
    for c in range(conversations):
        messages: list[dict[str, Any]] = [{"role": "system", "content": systems[c % 4]}]
        requests = []
        for t in range(turns):
            user = text.take(120)
            if t % 4 == 0:
                user = f"<context>\n{text.take(600)}\n</context>\n{user}"
            messages = [*messages, {"role": "user", "content": user}]
            requests.append(orjson.dumps({"model": model, "tools": tools, "messages": messages}))
            reply = text.take(450)
            messages = [*messages, {"role": "assistant", "content": reply}]
            new_text += [user, reply] if t < turns - 1 else [user]
        logs.append(requests)
    if grouped:
        stream = [raw for requests in logs for raw in requests]
    else:
        stream = [logs[c][t] for t in range(turns) for c in range(conversations)]
    sizes = [tokens.count_messages_openai(model, orjson.loads(raw)) for raw in stream]

    def run() -> float:
        bodies = [orjson.loads(raw) for raw in stream]  # fresh strings: no hash cached
        start = time.perf_counter()
        for body in bodies:
            dissect("openai", model, body)
        return (time.perf_counter() - start) / len(stream) * 1e6

    tokens._memo.clear()
    first = run()
    distinct = sum(len(piece) for piece in new_text)
    # a second pass, every segment seen, leaves the per-request overhead; only if the memo holds them all
    again = run() if distinct < tokens._MEMO_MAX_CHARS else float("nan")
    encoding = tokens.encoding_for_model(model)
    fresh = ["".join(list(piece)) for piece in new_text]
    start = time.perf_counter()
    for piece in fresh:
        encoding.encode_ordinary(piece)
    floor = (time.perf_counter() - start) / len(stream) * 1e6
    return {
        "requests": len(stream),
        "mean_tokens": statistics.mean(sizes),
        "distinct_chars": distinct,
        "first": first,
        "again": again,
        "floor": floor,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--model", default="gpt-4o")
    args = parser.parse_args()
    tokens.preload([args.model])
    print(f"dissect, model {args.model}, {args.iterations} calls a case, microseconds\n")
    print(f"{'case':<48} {'p50':>8} {'p99':>8} {'tokens':>8}")
    for label, p50, p99, total in gateway_cases(args.model, args.iterations):
        print(f"{label:<48} {p50:8.1f} {p99:8.1f} {total or '':>8}")
    print("\noffline: conversations of 16 turns, memo starting empty; microseconds a request")
    print(
        f"{'conversations':>13} {'order':>11} {'requests':>9} {'mean tokens':>12} {'distinct chars':>15} "
        f"{'dissect':>8} {'all seen':>9} {'new text':>9}"
    )
    for conversations, grouped in ((60, False), (240, False), (240, True)):
        r = offline_case(args.model, conversations, grouped)
        order = "grouped" if grouped else "interleaved"
        print(
            f"{conversations:>13} {order:>11} {r['requests']:>9,.0f} {r['mean_tokens']:>12,.0f} "
            f"{r['distinct_chars']:>15,.0f} {r['first']:>8.1f} {r['again']:>9.1f} {r['floor']:>9.1f}"
        )


if __name__ == "__main__":
    main()
