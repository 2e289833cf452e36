"""The three simulated products: who calls which model, how often, with what prompts and conversations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._prompts import CHAT_TEMPLATES, DOC_TEMPLATES, SUPPORT_TEMPLATES


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    team: str
    provider: Literal["openai", "anthropic"]
    model: str
    response_model: str  # what the provider names in its answer (OpenAI answers with the snapshot)
    request_share: float  # of all requests
    templates: tuple[tuple[str, float], ...]  # (template, weight)
    max_turns: int
    continue_probability: float  # after each turn, the user asks again with this probability
    turn_gap: tuple[float, float]  # seconds between a reply and the next question
    users: int
    output_median: int  # tokens
    output_sigma: float  # of the log-normal around the median
    long_output_share: float  # answers far longer than usual (full reports, whole documents)
    long_output: tuple[int, int]
    max_tokens: int | None
    temperature: float | None

    @property
    def mean_turns(self) -> float:
        p, total, reach = self.continue_probability, 0.0, 1.0
        for _ in range(self.max_turns):
            total += reach
            reach *= p
        return total


SUPPORT = Feature(
    name="support-faq",
    team="support",
    provider="openai",
    model="gpt-4o-mini",
    response_model="gpt-4o-mini-2024-07-18",
    request_share=0.45,
    templates=tuple(zip(SUPPORT_TEMPLATES, (0.25, 0.55, 0.20), strict=True)),
    max_turns=4,
    continue_probability=0.3,
    turn_gap=(20.0, 90.0),
    users=2500,
    output_median=140,
    output_sigma=0.45,
    long_output_share=0.0,
    long_output=(0, 0),
    max_tokens=600,
    temperature=0.2,
)
DOC_ANALYSIS = Feature(
    name="doc-analysis",
    team="legal",
    provider="anthropic",
    model="claude-sonnet-4-6",
    response_model="claude-sonnet-4-6",
    request_share=0.20,
    templates=tuple(zip(DOC_TEMPLATES, (0.6, 0.4), strict=True)),
    max_turns=5,
    continue_probability=0.45,
    turn_gap=(60.0, 400.0),
    users=30,
    output_median=700,
    output_sigma=0.5,
    long_output_share=0.05,
    long_output=(3000, 7500),
    max_tokens=8192,
    temperature=None,
)
CHAT = Feature(
    name="chat-assistant",
    team="product",
    provider="openai",
    model="gpt-4.1",
    response_model="gpt-4.1-2025-04-14",
    request_share=0.35,
    templates=tuple(zip(CHAT_TEMPLATES, (0.6, 0.4), strict=True)),
    max_turns=24,
    continue_probability=0.88,
    turn_gap=(25.0, 240.0),
    users=600,
    output_median=320,
    output_sigma=0.55,
    long_output_share=0.03,
    long_output=(2000, 5000),
    max_tokens=None,
    temperature=0.7,
)
FEATURES: tuple[Feature, ...] = (SUPPORT, DOC_ANALYSIS, CHAT)

# Requests by hour of day (UTC), a business-hours curve; weekends carry 40% of a weekday.
HOURLY = (2, 1, 1, 1, 1, 2, 4, 7, 10, 12, 12, 11, 10, 11, 12, 11, 10, 8, 6, 5, 4, 3, 3, 2)
WEEKEND_FACTOR = 0.4

DOC_INSTRUCTIONS: dict[str, tuple[str, ...]] = {
    "contract-review/v4": (
        "Review the agreements above against our standard positions. List every clause that deviates, "
        "quote the wording, rate the risk and propose fallback language we could send back.",
        "We are about to sign these documents. Identify anything that would stop you from approving "
        "them today, then the points we should negotiate, then the points we can accept as drafted.",
        "Compare the liability, indemnity, termination and data protection terms across these "
        "documents and tell me where they are inconsistent with each other.",
        "Extract the commercial terms (fees, payment terms, renewal, notice periods, service levels) "
        "into a table, one row per document, and flag anything unusual.",
    ),
    "report-summary/v2": (
        "Summarise these reports for the investment committee: performance against last year, the "
        "drivers, the outlook and the risks management is not talking about.",
        "Build a side-by-side comparison of revenue, margin, cash and debt across these reports and "
        "explain the three biggest differences.",
        "What changed between these periods? Focus on guidance, segment mix and anything that looks "
        "like a one-off, and say how confident you are in each point.",
        "Draft a one-page briefing on these results for a board member who has five minutes.",
    ),
}
SUPPORT_EXTRAS = (
    "I'm on the Premium plan.",
    "I use the app on Android.",
    "I use the app on an iPhone.",
    "This is quite urgent.",
    "I already restarted the app.",
    "I'm abroad at the moment.",
    "My card ends in 4417.",
    "I opened my account last month.",
    "I need the money for rent tomorrow.",
    "Your website did not answer this.",
    "The app shows no error message at all.",
    "I have been a customer for six years.",
)
