"""Build long conversations with evidence-labelled questions from MT-Bench-101 dialogues.

`faregate history eval` measures two things: the tokens a history policy saves, and whether the turns
a later question needs are still sent. The repo's conversation data (MT-Bench-101: 2-7 user turns a
dialogue) is too short for a policy to drop anything and has no evidence labels, so this script
builds long conversations from it, a haystack construction in the style of LongMemEval (Wu et al.,
2024), whose chat histories are real sessions concatenated around the sessions holding the evidence:

- a conversation concatenates 6-10 MT-Bench-101 dialogues, drawn at random: one user who changes
  subject several times within one chat. Only conversations of 30-80 messages are kept (a draw
  outside the range is drawn again). Turn ids are renumbered `<conversation>:<message>`, unique in
  the file;
- 2-3 of the embedded dialogues (never the last one) each lose their final user turn and its answer.
  That turn is asked at the end of the conversation as a question: `{"question": held-out user
  text, "answer": held-out assistant text, "evidence": [ids of that dialogue's earlier user turns]}`.
  MT-Bench-101's later turns build on its earlier ones (anaphora, follow-ups, corrections,
  self-affirmation), so a policy that keeps the question's dialogue in context keeps what the
  question refers to. Some tasks' last turns lean on their dialogue less (a math follow-up that is a
  new problem, a topic shift), so recall here is a strict measure: all earlier user turns must be
  sent.

The questions and answers are real dialogue turns; only their position is constructed. Each question
is asked on its own after the last turn (not one after another).

Two files, for an honest tuning protocol: `long-conversations-dev.jsonl` (seed 1) to choose settings
on, and `long-conversations.jsonl` (seed 0) to report on. They draw from disjoint halves of
MT-Bench-101 (split by a hash of the dialogue id), so no dialogue, and no question, is in both.
Deterministic for a given seed and split. Prints counts.

    .venv/bin/python bench/build_long_conversations.py              # both files
    .venv/bin/python bench/build_long_conversations.py --split dev --conversations 150 --seed 1
"""

from __future__ import annotations

import argparse
import hashlib
import random
from pathlib import Path
from typing import Any

import orjson

SOURCE = Path("/work/shared/data/history/mt-bench-101.jsonl")
HERE = Path(__file__).parent
OUT = {
    "test": HERE / "data" / "long-conversations.jsonl",
    "dev": HERE / "data" / "long-conversations-dev.jsonl",
}
SEED = {"test": 0, "dev": 1}
DIALOGUES = (6, 10)
MESSAGES = (30, 80)
QUESTIONS = (2, 3)


def half(dialogue_id: str) -> str:
    """Which split a source dialogue belongs to: stable across runs and Python versions."""
    return "dev" if hashlib.blake2b(dialogue_id.encode(), digest_size=8).digest()[0] % 2 else "test"


def build(dialogues: list[dict[str, Any]], count: int, seed: int, name: str) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    conversations = []
    while len(conversations) < count:
        chosen = rng.sample(dialogues, rng.randint(*DIALOGUES))
        held = set(rng.sample(range(len(chosen) - 1), rng.randint(*QUESTIONS)))
        size = sum(len(d["turns"]) for d in chosen) - 2 * len(held)
        if not MESSAGES[0] <= size <= MESSAGES[1]:
            continue
        number = len(conversations)
        turns: list[dict[str, str]] = []
        questions = []
        for k, dialogue in enumerate(chosen):
            source = dialogue["turns"]
            kept = source[:-2] if k in held else source
            first_id = len(turns)
            for turn in kept:
                turns.append(
                    {"id": f"{number}:{len(turns)}", "role": turn["role"], "content": turn["content"]}
                )
            if k in held:
                user, assistant = source[-2], source[-1]
                assert user["role"] == "user" and assistant["role"] == "assistant", dialogue["id"]
                evidence = [t["id"] for t in turns[first_id:] if t["role"] == "user"]
                questions.append(
                    {
                        "question": user["content"],
                        "answer": assistant["content"],
                        "evidence": evidence,
                        "source": dialogue["id"],
                        "task": dialogue["task"],
                    }
                )
        conversations.append(
            {
                "id": f"long-{name}-{number}",
                "sources": [d["id"] for d in chosen],
                "turns": turns,
                "questions": questions,
            }
        )
    return conversations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--split", choices=("test", "dev", "both"), default="both")
    parser.add_argument("--conversations", type=int, default=150)
    parser.add_argument("--seed", type=int, help="default: 0 for test, 1 for dev")
    parser.add_argument("--out", type=Path, help="default: bench/data/long-conversations[-dev].jsonl")
    args = parser.parse_args()
    rows = [orjson.loads(line) for line in args.source.read_bytes().splitlines() if line.strip()]
    for split in ("test", "dev") if args.split == "both" else (args.split,):
        pool = [r for r in rows if half(r["id"]) == split]
        seed = SEED[split] if args.seed is None else args.seed
        out = OUT[split] if args.out is None or args.split == "both" else args.out
        conversations = build(pool, args.conversations, seed, split)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"".join(orjson.dumps(c) + b"\n" for c in conversations))
        messages = sum(len(c["turns"]) for c in conversations)
        questions = sum(len(c["questions"]) for c in conversations)
        print(
            f"{out}: {len(conversations)} conversations, {messages:,} messages "
            f"({min(len(c['turns']) for c in conversations)}-{max(len(c['turns']) for c in conversations)} "
            f"a conversation), {questions} questions, from {len(pool)} of {len(rows)} dialogues "
            f"(split {split}, seed {seed}), {out.stat().st_size / 1e6:.2f} MB"
        )


if __name__ == "__main__":
    main()
