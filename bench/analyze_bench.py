"""Benchmark `faregate analyze` on a large, realistic request log: wall time and peak memory.

    .venv/bin/python bench/analyze_bench.py                       # 100,000 requests
    .venv/bin/python bench/analyze_bench.py --requests 20000 --gzip
    .venv/bin/python bench/analyze_bench.py --workload my.jsonl.gz  # analyze an existing log
    .venv/bin/python bench/analyze_bench.py --generator simulate    # `faregate simulate`'s workload

Goal: 100,000 requests averaging ~10,000 input tokens analyzed in at most 60 s on 2 cores with at
most 2 GB of memory. The log is generated first (not timed), then `faregate analyze --format json`
runs in a child process, timed from start to exit; peak memory is the largest resident set of the
child and its workers together, sampled from /proc every 50 ms, and the kernel's own maximum
(`getrusage`) for the largest single process.

The generated workload (seeded, deterministic) mixes three features:
- support-faq (OpenAI gpt-4o): ~2,000-token system prompt (three variants, one with a timestamp
  refreshed every minute), tool definitions, three documents (~1,000 tokens each) drawn from a
  pool of retrieved documents, a ~100-token question; a third of questions repeat an earlier one,
  exactly or paraphrased;
- doc-analysis (Anthropic claude-sonnet-4-5): ~2,000-token system prompt, four documents from the
  pool, a question;
- chat (OpenAI gpt-4o): multi-turn conversations (up to 14 turns, 40 interleaved at a time) whose
  history grows by each turn's question, its retrieved document and the ~400-token answer.
Every line is an envelope with a response carrying usage (input ~ characters / 4, some cached).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import orjson

START = datetime(2025, 3, 3, tzinfo=UTC)
_SYLLABLES = [a + b for a in "bcdfghklmnprstvz" for b in ("a", "e", "i", "o", "u", "ai", "ou", "ea")]


class Text:
    """Pseudo-English from a fixed vocabulary: cheap to generate, tokenizes like prose."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.words = ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3))) for _ in range(6000)]
        common = ["the", "of", "and", "to", "a", "in", "is", "for", "that", "with", "order", "account"]
        self.words += common * 40

    def sentence(self, n: int) -> str:
        words = self.rng.choices(self.words, k=n)
        return " ".join(words).capitalize() + "."

    def paragraph(self, tokens: int) -> str:
        out, total = [], 0
        while total < tokens:
            n = self.rng.randint(8, 22)
            out.append(self.sentence(n))
            total += int(n * 1.35) + 1
        return " ".join(out)


def workload(requests: int, seed: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    text = Text(rng)
    docs = [f'<document id="kb-{i}">{text.paragraph(1000)}</document>' for i in range(400)]
    faq_systems = [text.paragraph(2000) for _ in range(3)]
    analysis_system = text.paragraph(2000)
    chat_systems = [text.paragraph(1900) for _ in range(2)]
    tools = [
        {
            "type": "function",
            "function": {
                "name": f"tool_{i}",
                "description": text.sentence(30),
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            },
        }
        for i in range(4)
    ]
    questions: list[str] = []
    conversations: list[dict[str, Any]] = []
    step = 86400 / max(requests, 1)
    for i in range(requests):
        ts = START + timedelta(seconds=i * step)
        pick = rng.random()
        if pick < 0.22:
            yield _faq(rng, text, ts, faq_systems, tools, docs, questions)
        elif pick < 0.33:
            yield _analysis(rng, text, ts, analysis_system, docs)
        else:
            yield _chat(rng, text, ts, chat_systems, docs, conversations)


def _question(rng: random.Random, text: Text, questions: list[str]) -> str:
    roll = rng.random()
    if questions and roll < 0.2:
        return rng.choice(questions)  # exact repeat
    if questions and roll < 0.33:
        words = rng.choice(questions).split()
        words[rng.randrange(len(words))] = rng.choice(text.words)  # paraphrase: one word changed
        return " ".join(words)
    question = text.paragraph(90)
    if len(questions) < 5000:
        questions.append(question)
    return question


def _usage_openai(messages_chars: int, answer: str, rng: random.Random, cached: bool) -> dict[str, Any]:
    prompt = messages_chars // 4
    return {
        "prompt_tokens": prompt,
        "completion_tokens": len(answer) // 4,
        "total_tokens": prompt + len(answer) // 4,
        "prompt_tokens_details": {"cached_tokens": (min(prompt, 2048) // 1024) * 1024 if cached else 0},
    }


def _faq(rng, text, ts, systems, tools, docs, questions):  # type: ignore[no-untyped-def]
    variant = rng.randrange(len(systems))
    system = systems[variant]
    if variant == 0:
        system = f"Current time: {ts:%Y-%m-%d %H:%M}.\n{system}"
    context = "\n".join(rng.sample(docs, 3))
    user = f"<documents>\n{context}\n</documents>\n{_question(rng, text, questions)}"
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "tools": tools,
        "metadata": {"feature": "support-faq"},
    }
    answer = text.paragraph(rng.choice([120, 150, 200, 250, 600]))
    chars = len(system) + len(user) + 1500
    return _envelope(body, ts, "openai", answer, _usage_openai(chars, answer, rng, rng.random() < 0.3))


def _analysis(rng, text, ts, system, docs):  # type: ignore[no-untyped-def]
    context = "\n".join(rng.sample(docs, 4))
    user = f"<documents>\n{context}\n</documents>\nAnalyse these: {text.paragraph(80)}"
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": system,
        "messages": [{"role": "user", "content": user}],
    }
    answer = text.paragraph(rng.choice([300, 400, 500, 900]))
    usage = {"input_tokens": (len(system) + len(user)) // 4, "output_tokens": len(answer) // 4}
    return _envelope(body, ts, "anthropic", answer, usage, feature="doc-analysis")


def _chat(rng, text, ts, systems, docs, conversations):  # type: ignore[no-untyped-def]
    if len(conversations) < 40 or rng.random() < 0.02:
        conversations.append(
            {
                "system": rng.choice(systems),
                "messages": [],
                "turns": rng.randint(6, 24),
                "chars": 0,
            }
        )
    conversation = conversations[rng.randrange(len(conversations))]
    question = text.paragraph(100)
    if rng.random() < 0.6:  # the rest are follow-ups with no retrieval
        question = f"<context>\n{rng.choice(docs)}\n</context>\n{question}"
    messages = [{"role": "system", "content": conversation["system"]}, *conversation["messages"]]
    messages.append({"role": "user", "content": question})
    body = {"model": "gpt-4o", "messages": messages, "metadata": {"feature": "chat"}}
    answer = text.paragraph(rng.choice([250, 350, 400, 450, 700]))
    chars = len(conversation["system"]) + conversation["chars"] + len(question)
    usage = _usage_openai(chars, answer, rng, cached=len(conversation["messages"]) > 0)
    conversation["messages"] += [
        {"role": "user", "content": question},
        {"role": "assistant", "content": answer},
    ]
    conversation["chars"] += len(question) + len(answer)
    if len(conversation["messages"]) // 2 >= conversation["turns"]:
        conversations.remove(conversation)
    return _envelope(body, ts, "openai", answer, usage)


def _envelope(body, ts, provider, answer, usage, feature=None):  # type: ignore[no-untyped-def]
    response: dict[str, Any]
    if provider == "anthropic":
        response = {"type": "message", "content": [{"type": "text", "text": answer}], "usage": usage}
    else:
        response = {"choices": [{"message": {"role": "assistant", "content": answer}}], "usage": usage}
    envelope = {"timestamp": ts.isoformat(), "provider": provider, "request": body, "response": response}
    if feature:
        envelope["metadata"] = {"feature": feature}
    return envelope


def write(path: Path, requests: int, seed: int) -> None:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    handle: BinaryIO
    with opener(path, "wb", **({"compresslevel": 1} if path.suffix == ".gz" else {})) as handle:
        batch: list[bytes] = []
        for envelope in workload(requests, seed):
            batch.append(orjson.dumps(envelope))
            if len(batch) >= 1000:
                handle.write(b"\n".join(batch) + b"\n")
                batch.clear()
        if batch:
            handle.write(b"\n".join(batch) + b"\n")


def _tree_rss(root: int) -> int:
    """Resident bytes of `root` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def run(workload_path: Path, out: Path) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "faregate.cli",
        "analyze",
        str(workload_path),
        "--format",
        "json",
        "--out",
        str(out),
    ]
    started = time.perf_counter()
    child = subprocess.Popen(command)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(child.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = child.wait()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    maxrss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "exit_code": code,
        "wall_s": wall,
        "peak_tree_rss_mib": peak / 2**20,
        "max_process_rss_mib": maxrss_kib / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--gzip", action="store_true", help="write the generated log gzipped")
    parser.add_argument("--workload", type=Path, help="analyze this log instead of generating one")
    parser.add_argument(
        "--generator",
        choices=("builtin", "simulate"),
        default="builtin",
        help="builtin: the workload described above (~10,000 input tokens a request); "
        "simulate: `faregate simulate`'s workload (faregate.simulate.write_workload)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated log and the report")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="faregate-analyze-bench-"))
    path = args.workload
    if path is None:
        path = tmp / ("workload.jsonl.gz" if args.gzip else "workload.jsonl")
        started = time.perf_counter()
        if args.generator == "simulate":
            from rich.console import Console

            from faregate.simulate import write_workload

            write_workload(requests=args.requests, out=path, seed=args.seed, console=Console(stderr=True))
        else:
            write(path, args.requests, args.seed)
        print(
            f"generated {args.requests:,} requests in {time.perf_counter() - started:.1f} s: {path} "
            f"({path.stat().st_size / 2**20:,.0f} MiB)",
            flush=True,
        )
    report_path = tmp / "report.json"
    result = run(path, report_path)
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    requests = report.get("requests", 0)
    tokens = report.get("tokens", {})
    input_tokens = sum(v for k, v in tokens.items() if k != "output")
    result.update(
        requests=requests,
        requests_per_s=requests / result["wall_s"] if result["wall_s"] else 0.0,
        mean_input_tokens=input_tokens / requests if requests else 0,
        input_bytes=path.stat().st_size,
        cpus=os.cpu_count(),
    )
    print(json.dumps(result, indent=2))
    if not args.keep and args.workload is None:
        path.unlink()
        report_path.unlink(missing_ok=True)
        tmp.rmdir()


if __name__ == "__main__":
    main()
