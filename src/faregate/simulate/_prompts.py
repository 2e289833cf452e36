"""System prompts (about 2,000 tokens each, a few templates per feature) and tool definitions.

Real system prompts are long because they carry policies and worked examples; these are built the
same way: a handwritten core, then policy bullets and examples until the prompt reaches its size.
The assistant's prompt carries the current date and time: `systems[template]` is then the text
before the clock line and the text after it (see `clock_line`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from random import Random
from typing import Any

from ._corpus import (
    BANK_RULES,
    LEGAL_REPLIES,
    WORK,
    Sentences,
    counter,
)
from ._faq import FAQ_INTENTS

SUPPORT_TEMPLATES = ("support-faq/v12", "support-faq/v13", "support-faq/v13-premium")
DOC_TEMPLATES = ("contract-review/v4", "report-summary/v2")
CHAT_TEMPLATES = ("assistant/v8", "assistant/v9")


def clock_line(when: datetime) -> str:
    """The volatile span: a prompt that states the time changes on every request."""
    return f"Current date and time: {when.strftime('%Y-%m-%dT%H:%M:%SZ')} ({when.strftime('%A')}).\n\n"


_SUPPORT_CORE = """## Role
You help customers with their cards, payments, transfers, top-ups and account settings. You can look up \
the customer's own cards, transactions and transfers with the tools below. You cannot move money, change \
limits or unblock a PIN yourself: you explain how the customer can do it in the app, or you open a ticket.

## Using the help-centre articles
Each customer message starts with help-centre articles inside <documents> tags, retrieved for that \
message. Answer from these articles and from tool results only. If they do not answer the question, say \
so plainly and offer to open a ticket. Never invent fees, limits or timings.

## Tone and style
- Write in plain British English, in short sentences.
- Start with the answer, then the steps, then anything the customer should watch out for.
- Use numbered steps for anything with more than two steps.
- Do not apologise more than once in a conversation.

## Policies
"""
_DOC_CORE = """## Role
You review contracts and financial reports for the legal and finance team at Northwind Holdings. The \
user pastes one or more documents inside <documents> tags, each with an index and a source, and asks \
for an analysis. Your readers are lawyers and analysts who will act on what you write, so precision \
matters more than brevity.

## Method
1. Read every document in full before answering. Note the parties, the dates and the governing law.
2. Compare each clause with Northwind's standard positions (below) and flag every deviation.
3. Quote the exact wording you rely on, with the document index and clause number, e.g. [2, cl. 9.3].
4. Separate facts taken from the documents from your own assessment.
5. If a document is missing pages or a referenced schedule, say so instead of guessing.

## Output format
Start with a summary of at most five bullet points. Then give a table with the columns Clause, \
Document, What it says, Risk (low, medium or high) and Recommendation. End with open questions for \
the counterparty. Use Markdown headings. Do not add a disclaimer.

## Standard positions and past findings
"""
_CHAT_CORE = """## Role
You help people plan, write and organise their work inside Lumen Workspace: boards, pages, tasks, \
timelines and automations. Users ask for drafts (emails, updates, plans, proposals), for summaries of \
their notes, and for help using the product. When a workspace article is included inside <documents> \
tags, prefer it to your general knowledge about the product.

## Style
- Match the user's language and level of formality.
- Lead with the deliverable; keep explanations short unless asked.
- Use headings and bullets for anything longer than three paragraphs.
- Dates: interpret relative dates ("next Friday") from the current date above.

## Product knowledge
"""


def _grow(
    core: str,
    add: Callable[[Random], str],
    examples: Callable[[Random], str],
    count: Callable[[str], int],
    rng: Random,
    target: int,
) -> str:
    """`core`, then bullets from `add` and, after every fourth, an example, until `target` tokens."""
    parts = [core]
    tokens = count(core)
    n = 0
    while tokens < target:
        n += 1
        piece = (add(rng) + "\n") if n % 5 else ("\n" + examples(rng) + "\n")
        parts.append(piece)
        tokens += count(piece)
    return "".join(parts).rstrip("\n") + "\n"


def system_prompts(
    support_replies: Sentences, legal_replies: Sentences, work_replies: Sentences
) -> dict[str, tuple[str, str]]:
    systems: dict[str, tuple[str, str]] = {}
    gpt = counter("gpt-4o")
    claude = counter("claude-sonnet-4-6")
    personas = {"support-faq/v12": "Ava", "support-faq/v13": "Ava", "support-faq/v13-premium": "Ava Premium"}
    for n, template in enumerate(SUPPORT_TEMPLATES):
        rng = Random(f"{template}/{n}")

        def example(r: Random) -> str:
            intent, questions = r.choice(FAQ_INTENTS)
            reply, _ = support_replies.compose(r, 60, gpt, paragraph=(4, 4))
            return f"Example ({intent}):\nCustomer: {r.choice(questions)}\nAssistant: {reply}\n"

        intro = (
            f"You are {personas[template]}, the customer support assistant for Northwind Bank, a UK mobile "
            "bank with about four million customers. You answer questions in the chat inside the "
            "Northwind app and on the website.\n\n"
        )
        body = _grow(
            intro + _SUPPORT_CORE,
            BANK_RULES.sentence,
            example,
            gpt,
            rng,
            rng.randint(1900, 2200),
        )
        systems[template] = (body, "")
    for n, template in enumerate(DOC_TEMPLATES):
        rng = Random(f"{template}/{n}")
        focus = "contracts" if template.startswith("contract") else "financial reports"

        def finding(r: Random) -> str:
            text, _ = legal_replies.compose(r, 90, claude, paragraph=(9, 9))
            return f"Example finding:\n{text}\n"

        intro = (
            "You are Counsel, an analysis assistant for Northwind Holdings, specialised in "
            f"{focus}. Today you are working for the legal and finance team.\n\n"
        )
        body = _grow(
            intro + _DOC_CORE,
            lambda r: "- " + LEGAL_REPLIES.sentence(r),
            finding,
            claude,
            rng,
            rng.randint(1900, 2200),
        )
        systems[template] = (body, "")
    for n, template in enumerate(CHAT_TEMPLATES):
        rng = Random(f"{template}/{n}")

        def exchange(r: Random) -> str:
            text, _ = work_replies.compose(r, 80, gpt, paragraph=(9, 9))
            return f"Example answer:\n{text}\n"

        head = (
            "You are Sage, the AI assistant built into Lumen Workspace, a project management tool used "
            "by teams at about 40,000 companies.\n"
        )
        tail = _grow(
            _CHAT_CORE, lambda r: "- " + WORK.sentence(r), exchange, gpt, rng, rng.randint(1850, 2150)
        )
        systems[template] = (head, tail)
    return systems


def _function(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
    }


def _string(description: str, enum: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "description": description}
    if enum:
        schema["enum"] = enum
    return schema


_LAST4 = _string("Last four digits of the card, if the customer gave them.")
_SUPPORT_TOOLS = [
    _function(
        "get_card_status",
        "Delivery, activation and block status of the customer's cards. Use before answering any "
        "question about where a card is or why it does not work.",
        {"card_last4": _LAST4},
        [],
    ),
    _function(
        "list_recent_transactions",
        "The customer's card payments, top-ups, withdrawals and transfers, newest first.",
        {
            "days": {"type": "integer", "description": "How many days back to look (1-90).", "minimum": 1},
            "status": _string(
                "Only transactions in this state.", ["pending", "completed", "declined", "reverted"]
            ),
            "card_last4": _LAST4,
        },
        ["days"],
    ),
    _function(
        "get_transfer_status",
        "Status, expected arrival and any rejection reason of an outgoing transfer.",
        {"reference": _string("The transfer reference shown in the app, e.g. TR-8F2K1.")},
        ["reference"],
    ),
    _function(
        "freeze_card",
        "Freeze a card immediately. The customer can unfreeze it in the app.",
        {"card_last4": _LAST4, "reason": _string("Why.", ["lost", "stolen", "suspicious_activity", "other"])},
        ["card_last4", "reason"],
    ),
    _function(
        "create_support_ticket",
        "Open a ticket for the payments team when the problem cannot be solved in the chat.",
        {
            "category": _string("Area.", ["card", "transfer", "top_up", "refund", "account", "fraud"]),
            "summary": _string("One or two sentences, no card numbers."),
            "priority": _string("Urgency.", ["low", "normal", "high"]),
        },
        ["category", "summary"],
    ),
]
_CONTRACT_TOOLS = [
    {
        "name": "record_finding",
        "description": "Save one finding to the matter's review log so the legal team can track it.",
        "input_schema": {
            "type": "object",
            "properties": {
                "document_index": {"type": "integer"},
                "clause": {"type": "string", "description": "Clause number, e.g. 9.3"},
                "risk": {"type": "string", "enum": ["low", "medium", "high"]},
                "summary": {"type": "string"},
                "recommendation": {"type": "string"},
            },
            "required": ["document_index", "clause", "risk", "summary"],
        },
    },
    {
        "name": "lookup_standard_position",
        "description": "Northwind's approved fallback wording for a clause type.",
        "input_schema": {
            "type": "object",
            "properties": {"clause_type": {"type": "string", "description": "e.g. limitation of liability"}},
            "required": ["clause_type"],
        },
    },
]
_CHAT_TOOLS = [
    _function(
        "search_workspace",
        "Full-text search over the user's boards, pages and tasks.",
        {"query": _string("What to look for."), "limit": {"type": "integer", "minimum": 1, "maximum": 20}},
        ["query"],
    ),
    _function(
        "create_task",
        "Create a task on a board.",
        {
            "board": _string("Board name."),
            "title": _string("Task title."),
            "due": _string("Due date, YYYY-MM-DD."),
            "assignee": _string("Member's email address."),
        },
        ["board", "title"],
    ),
    _function(
        "schedule_meeting",
        "Propose a meeting on the user's connected calendar.",
        {
            "title": _string("Meeting title."),
            "attendees": {"type": "array", "items": {"type": "string"}},
            "duration_minutes": {"type": "integer", "minimum": 15},
        },
        ["title", "attendees"],
    ),
]


def tool_definitions() -> dict[str, list[dict[str, Any]]]:
    return {
        "support-faq/v12": _SUPPORT_TOOLS,
        "support-faq/v13": _SUPPORT_TOOLS,
        "support-faq/v13-premium": _SUPPORT_TOOLS,
        "contract-review/v4": _CONTRACT_TOOLS,
        "assistant/v9": _CHAT_TOOLS,
    }
