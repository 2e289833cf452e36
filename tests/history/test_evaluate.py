"""`history eval`: the offline replay, its report, and its handling of bad input."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from faregate.history.command import history_app
from faregate.history.evaluate import extractive_summary, flat_after_turn
from faregate.tokens import count_messages_openai, count_text

runner = CliRunner()

EXCHANGES = [
    ("My dog is named Biscuit and she is a golden retriever who loves swimming.", "Biscuit sounds lovely!"),
    ("What is the capital of Australia?", "Canberra."),
    ("How do I reverse a list in Python?", "Use list.reverse() or slicing with [::-1]."),
    ("Give me a quick recipe for pancakes.", "Mix flour, eggs and milk, then fry."),
    ("What is 17 times 23?", "391."),
    ("Recommend a science fiction novel.", "Try Dune by Frank Herbert."),
    ("Translate 'good morning' into Spanish.", "Buenos días."),
    ("At what temperature does water boil?", "100 degrees Celsius at sea level."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci."),
    ("What is the tallest mountain on Earth?", "Mount Everest."),
    ("How many legs does a spider have?", "Eight."),
]
QUESTION = {
    "question": "Which breed is my dog Biscuit, and what does she love doing?",
    "answer": "A golden retriever who loves swimming.",
    "evidence": ["t0"],
}


def conversation(n_exchanges: int = len(EXCHANGES), questions: bool = True) -> dict[str, Any]:
    turns = []
    for user, assistant in EXCHANGES[:n_exchanges]:
        turns.append({"id": f"t{len(turns)}", "role": "user", "content": user})
        turns.append({"id": f"t{len(turns)}", "role": "assistant", "content": assistant})
    return {"id": f"c{n_exchanges}", "turns": turns, "questions": [QUESTION] if questions else []}


@pytest.fixture
def conversations(tmp_path: Path) -> Path:
    path = tmp_path / "conversations.jsonl"
    rows = [conversation(), conversation(3, questions=False)]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def run(path: Path, *args: str) -> dict[str, Any]:
    result = runner.invoke(history_app, ["eval", "--conversations", str(path), "--format", "json", *args])
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = orjson.loads(result.stdout)
    return report


def test_report_keys(conversations: Path) -> None:
    common = {
        "policy",
        "params",
        "conversations",
        "requests",
        "per_turn",
        "history_tokens_without",
        "history_tokens_with",
        "history_reduction",
        "input_reduction",
        "long_conversations",
        "flat_after_turn",
        "questions",
        "evidence_recall",
    }
    window = run(conversations, "--policy", "window")
    assert common <= window.keys() and "recall_by_budget" not in window
    assert window["conversations"] == 2 and window["requests"] == 11 + 3
    assert window["long_conversations"] == {
        "min_turns": 20,
        "conversations": 1,
        "history_reduction": window["long_conversations"]["history_reduction"],
    }
    assert window["long_conversations"]["history_reduction"] > 0.4
    # 11 and 3 requests: the buckets by length, and no request reaches the 20th.
    assert [b["requests"] for b in window["by_length"]] == ["0-9", "10-19"]
    assert window["late_requests"] == {"from_request": 20, "requests": 0, "history_reduction": None}
    assert set(window["per_turn"][0]) == {"turn", "requests", "input_tokens_without", "input_tokens_with"}
    summary = run(conversations, "--policy", "summary", "--keep-last", "1", "--summary-every", "2")
    assert common <= summary.keys()
    assert summary["summary_model"] == "extractive stand-in"
    assert "evidence_in_summary_input" in summary
    retrieve = run(conversations, "--policy", "retrieve", "--budgets", "50,1000")
    assert common <= retrieve.keys()
    assert set(retrieve["recall_by_budget"]) == {"50", "1000"}


def test_retrieve_recalls_an_obvious_evidence_turn_that_a_short_window_loses(conversations: Path) -> None:
    retrieve = run(conversations, "--policy", "retrieve", "--keep-last", "1", "--top", "1")
    assert retrieve["questions"] == 1
    assert retrieve["evidence_recall"] == 1.0
    assert retrieve["recall_by_budget"]["4000"] == 1.0
    assert retrieve["history_reduction"] > 0.5
    window = run(conversations, "--policy", "window", "--keep-last", "1")
    assert window["evidence_recall"] == 0.0


def test_summary_recall_counts_only_verbatim_turns(conversations: Path) -> None:
    report = run(conversations, "--policy", "summary", "--keep-last", "1", "--summary-every", "2")
    assert report["evidence_recall"] == 0.0  # the dog's turn was summarised, not sent verbatim
    assert report["evidence_in_summary_input"] == 1.0


def test_tokens_are_the_gateway_counts(conversations: Path) -> None:
    report = run(conversations, "--policy", "window", "--keep-last", "100")
    assert report["history_reduction"] == 0.0 and report["input_reduction"] == 0.0
    for row in report["per_turn"]:
        assert row["input_tokens_with"] == row["input_tokens_without"]
    first = {"messages": [{"role": "user", "content": EXCHANGES[0][0]}]}  # request 1 of both
    assert report["per_turn"][0]["input_tokens_without"] == count_messages_openai("gpt-4o", first)
    messages = [
        {"role": r, "content": c} for u, a in EXCHANGES[:2] for r, c in (("user", u), ("assistant", a))
    ]
    third = {"messages": [*messages, {"role": "user", "content": EXCHANGES[2][0]}]}
    assert report["per_turn"][2]["input_tokens_without"] == count_messages_openai("gpt-4o", third)
    budgeted = run(conversations, "--policy", "window", "--keep-last", "100", "--max-history-tokens", "60")
    assert budgeted["history_tokens_with"] < report["history_tokens_with"]
    assert budgeted["params"]["max_history_tokens"] == 60


def test_gzip_input_limit_and_table_output(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join(orjson.dumps(conversation(n)) + b"\n" for n in (4, 5, 6))))
    assert run(path, "--limit", "2")["conversations"] == 2
    result = runner.invoke(history_app, ["eval", "--conversations", str(path), "--policy", "window"])
    assert result.exit_code == 0
    assert "history policy window" in result.stdout and "mean input tokens by request" in result.stdout


@pytest.mark.parametrize(
    ("content", "args", "says"),
    [
        (None, [], "cannot read"),
        (
            b'{"id": "a", "turns": [{"id": "1", "role": "user", "content": "hi"}]}\n{"id": \n',
            [],
            "bad.jsonl:2: invalid JSON",
        ),
        (b'{"id": "a"}\n', [], "bad.jsonl:1: want"),
        (
            b'{"id": "a", "turns": [{"id": "1", "role": "bot", "content": "hi"}]}\n',
            [],
            "bad.jsonl:1: want turns",
        ),
        (
            b'{"id": "a", "turns": [{"id": "1", "role": "user", "content": "hi"}],'
            b' "questions": [{"question": "q", "answer": "a", "evidence": ["9"]}]}\n',
            [],
            "evidence names turns",
        ),
        (b"\n", [], "holds no conversations"),
        (
            b'{"id": "a", "turns": [{"id": "1", "role": "user", "content": "hi"}]}\n',
            ["--budgets", "1,x"],
            "--budgets",
        ),
    ],
)
def test_bad_input_exits_2(tmp_path: Path, content: bytes | None, args: list[str], says: str) -> None:
    path = tmp_path / "bad.jsonl"
    if content is not None:
        path.write_bytes(content)
    result = runner.invoke(history_app, ["eval", "--conversations", str(path), "--format", "json", *args])
    assert result.exit_code == 2
    assert says in result.stderr
    assert result.stdout == ""


def test_extractive_summary_takes_first_sentences_within_a_budget() -> None:
    texts = ["user: I live in Oslo. It rains.\nassistant: Noted.", "user: My budget is $400!\nassistant: OK."]
    assert extractive_summary(texts) == "user: I live in Oslo.\nuser: My budget is $400!"
    long = extractive_summary(["user: " + "word " * 1000], max_tokens=50)
    assert count_text("gpt-4o", long) <= 51


def test_flat_after_turn() -> None:
    def rows(values: list[float], requests: int = 100) -> list[dict[str, Any]]:
        return [
            {"turn": t, "requests": requests, "input_tokens_with": v, "input_tokens_without": v}
            for t, v in enumerate(values, 1)
        ]

    assert flat_after_turn(rows([10, 100, 200, 300, 310, 320, 290, 330])) == 4
    assert flat_after_turn(rows([10, 20, 40, 80, 160])) is None  # growing to the end
    tail = [*rows([10, 100, 200, 300, 310]), {"turn": 6, "requests": 3, "input_tokens_with": 900}]
    assert flat_after_turn(tail) == 4  # a request number only 3 conversations reach does not count


def test_late_requests_drop_more_history_than_whole_conversations(tmp_path: Path) -> None:
    """From the 20th request on a 4-exchange window sends ~4 of 19+ exchanges; early requests pull
    the whole-conversation figure down."""
    turns = []
    for i in range(25):
        user, assistant = EXCHANGES[i % len(EXCHANGES)]
        turns += [
            {"id": f"u{i}", "role": "user", "content": f"{user} ({i})"},
            {"id": f"a{i}", "role": "assistant", "content": assistant},
        ]
    path = tmp_path / "long.jsonl"
    path.write_bytes(orjson.dumps({"id": "long", "turns": turns, "questions": []}) + b"\n")
    report = run(path, "--policy", "window", "--keep-last", "4")
    late = report["late_requests"]
    assert late["requests"] == 6  # requests 20..25
    assert late["history_reduction"] > 0.75 > report["history_reduction"] > 0.5
    assert report["by_length"] == [
        {"requests": "20-29", "conversations": 1, "history_reduction": report["history_reduction"]}
    ]
