"""The fixed library a workload draws on, built once per process: retrievable documents (help-centre
articles, contracts, earnings reports, product guides), system prompts, tools and sentence pools.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from random import Random
from typing import Any

from ._corpus import (
    BANK,
    LEGAL,
    LEGAL_FOCUS,
    LEGAL_REPLIES,
    WORK,
    WORK_ASKS,
    WORK_DETAILS,
    WORK_REPLIES,
    Sentences,
    counter,
    pool,
)
from ._faq import FAQ_INTENTS
from ._grammar import COMPANIES, Grammar
from ._prompts import system_prompts, tool_definitions


@dataclass(frozen=True, slots=True)
class Document:
    """A retrievable text: `body` is its content and closing tags, placed after a per-position header."""

    source: str
    body: str


def document_header(index: int, source: str) -> str:
    return f'<document index="{index}">\n<source>{source}</source>\n<document_content>\n'


_BANK_HEADINGS = ("How it works", "Fees", "Timing", "Troubleshooting", "Security", "Limits", "Contact us")
_CONTRACT_HEADINGS = (
    "Definitions",
    "Services",
    "Fees and payment",
    "Term and termination",
    "Liability",
    "Confidentiality",
    "Data protection",
    "Governing law",
)
_REPORT_HEADINGS = ("Highlights", "Segment performance", "Liquidity", "Outlook", "Risk factors")
_WORK_HEADINGS = ("Overview", "Step by step", "Permissions", "Limits", "Troubleshooting")


def _article(rng: Random, grammar: Grammar, title: str, headings: Sequence[str], target: int) -> str:
    """Markdown with sections of a few sentences, about `target` tokens (cl100k estimate)."""
    count = counter("claude-sonnet-4-6")
    parts = [f"# {title}\n"]
    tokens = count(parts[0])
    section = 0
    while tokens < target:
        heading = headings[section % len(headings)]
        if section >= len(headings):
            heading += f" ({section // len(headings) + 1})"
        paragraph = " ".join(grammar.sentence(rng) for _ in range(rng.randint(3, 7)))
        parts.append(f"\n## {section + 1}. {heading}\n{paragraph}\n")
        tokens += count.once(parts[-1])
        section += 1
    return "".join(parts)


def _document(source: str, text: str) -> Document:
    return Document(source, text + "</document_content>\n</document>\n")


def _slug(text: str) -> str:
    return "-".join(text.lower().replace(",", "").replace(".", "").split())


@dataclass(frozen=True)
class Corpus:
    """Everything fixed: documents by pool, system prompts and tools by template, sentence pools."""

    help_centre: dict[str, list[Document]]  # FAQ intent -> its articles, in relevance order
    contracts: list[Document]
    reports: list[Document]
    workspace_docs: list[Document]
    systems: dict[str, tuple[str, str]]  # template -> (prompt, or the part before the clock; after it)
    tools: dict[str, list[dict[str, Any]]]  # template -> tool definitions (absent: none)
    support_replies: Sentences
    legal_replies: Sentences
    work_replies: Sentences
    work_asks: Sentences
    work_details: Sentences
    legal_focus: Sentences


@functools.cache
def corpus() -> Corpus:
    """Built once (a fraction of a second); the same for every seed, as a product's prompts are."""
    rng = Random(20261102)
    help_centre: dict[str, list[Document]] = {}
    for intent, _ in FAQ_INTENTS:
        name = intent.replace("_", " ").capitalize()
        help_centre[intent] = [
            _document(
                f"help-centre/{_slug(name)}/part-{part}.md",
                _article(rng, BANK, f"{name}: part {part} of 3", _BANK_HEADINGS, rng.randint(750, 1100)),
            )
            for part in (1, 2, 3)
        ]
    contracts = []
    for n in range(60):
        company = COMPANIES[n % len(COMPANIES)]
        kind = ("Master Services Agreement", "Data Processing Addendum", "Order Form", "Licence Agreement")[
            n % 4
        ]
        title = f"{kind} between Northwind Holdings and {company} ({2021 + n % 5})"
        contracts.append(
            _document(
                f"contracts/{_slug(company)}/{_slug(kind)}-{2021 + n % 5}.pdf",
                _article(rng, LEGAL, title, _CONTRACT_HEADINGS, rng.randint(900, 1500)),
            )
        )
    reports = []
    for n in range(40):
        company = COMPANIES[(n * 5) % len(COMPANIES)]
        period = f"Q{n % 4 + 1} {2024 + n // 16}"
        reports.append(
            _document(
                f"reports/{_slug(company)}/{_slug(period)}-results.pdf",
                _article(
                    rng, LEGAL, f"{company}: {period} results", _REPORT_HEADINGS, rng.randint(900, 1500)
                ),
            )
        )
    workspace_docs = [
        _document(
            f"docs/workspace/article-{n:03d}.md",
            _article(rng, WORK, f"Lumen Workspace guide {n + 1}", _WORK_HEADINGS, rng.randint(650, 1000)),
        )
        for n in range(50)
    ]
    support_replies = Sentences(pool(BANK, 11, 400))
    legal_replies = Sentences(pool(LEGAL_REPLIES, 12, 400))
    work_replies = Sentences(pool(WORK_REPLIES, 13, 400))
    return Corpus(
        help_centre=help_centre,
        contracts=contracts,
        reports=reports,
        workspace_docs=workspace_docs,
        systems=system_prompts(support_replies, legal_replies, work_replies),
        tools=tool_definitions(),
        support_replies=support_replies,
        legal_replies=legal_replies,
        work_replies=work_replies,
        work_asks=Sentences(pool(WORK_ASKS, 14, 300)),
        work_details=Sentences(pool(WORK_DETAILS, 15, 400)),
        legal_focus=Sentences(pool(LEGAL_FOCUS, 16, 200)),
    )
