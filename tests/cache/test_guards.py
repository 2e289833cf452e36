"""Guards on semantic hits, on real queries: banking77 and clinc150 pairs of the same intent that
are paraphrases (must pass) or near misses differing in a number, negation or a name (must be refused),
and the false-refusal rate on GPTCache's duplicate pairs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from faregate.cache import guards
from faregate.cache.guards import refuse

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "semantic-cache"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"no data at {DATA}")

# Pairs found in the data sets (same intent, high word overlap); every text is a `text` line verbatim.
PARAPHRASES = [
    ("why hasn't my top up gone through yet", "My top up hasn't gone through yet, why?"),  # banking77
    ("is it possible to top-up with google pay.", "Is it possible to top up with Google Pay?"),
    ("what time is it in adelaide, australia right now", "what time is it right now in adelaide, australia"),
    ("turn to volume 4", "turn volume to 4"),  # clinc150
    ("Why did I only get $20 when I tried to get $100", "I asked for $100 cash but only got $20?"),
    (
        "My card still hasn't arrived after 2 weeks. Is it lost?",
        "I still don't have my card after 2 weeks.  What should I do?",
    ),
    (
        "My exchange went wrong. I swapped Russian Ruble for UK pounds and was charged too much.",
        "I'm pretty sure something went wrong with my exchange. I changed Russian Ruble to UK pounds and "
        "was charged way too much!",
    ),
    (
        "When I made a purchase last Saturday, I was charged extra. Did I receive the right exchange rate?",
        "The exchange rate for my transaction last Saturday seems to have been wrong I got charged extra.  "
        "Please fix.",
    ),
    ("What is this €1 fee in my statement?", "I got a extra €1 fee in my statement"),
    ("My card has not arrived yet.", "i have not received my card"),
    ("Can you explain what this random $1 charge is?", "What is this $1 charge on my statement?"),
]

NEAR_MISSES = [
    ("what is the square root of 95", "what is the square root of 36", "numbers differ: 95 vs 36"),
    (
        "I am only 17. Can I make an account?",
        "Can my 19 year old daughter open a savings account at the bank?",
        "numbers differ: 17 vs 19",
    ),
    (
        "Can I have more disposable cards?",
        "Can I have more than 2 disposable cards?",
        "numbers differ: - vs 2",
    ),
    (
        "reserve table for 5 at red robin under the name sara at 3",
        "i want to reserve table for 5 at red robin under the name sara at 5",
        "numbers differ: 3 vs -",
    ),
    (
        "Why do I see an extra £1 charge on my statement?",
        "Why do I see an extra €1 charge on my statement?",
        "currencies differ: £ vs €",
    ),
    ("I can't get my card out of the ATM", "How can I get my card out of the ATM?", "negation differs"),
    ("Can I top up with a cheque?", "Why can't I top up with a cheque?", "negation differs"),
    (
        "What should I do if I think someone is using my card.",
        "What should I do if I think someone is using my card without my permission?",
        "negation differs",
    ),
    ("i cannot locate my phone, can you help me", "can you help me locate my phone", "negation differs"),
    (
        "Is it possible to top up with Apple Pay?",
        "Is it possible to top up with Google Pay?",
        "entities differ: Apple vs Google",
    ),
    ("Is there a fee for a SEPA transfer", "is there a fee for swift transfer", "entities differ: SEPA vs -"),
    (
        "Why is my ATM withdrawal still pending?",
        "Why is my cash withdrawal still pending?",
        "entities differ: ATM vs -",
    ),
    ("Can I get a card in the EU?", "Can I get a card in the US?", "entities differ: EU vs US"),
]


@pytest.mark.parametrize(("stored", "incoming"), PARAPHRASES)
def test_paraphrases_from_the_data_pass(stored: str, incoming: str) -> None:
    assert refuse(stored, incoming) is None
    assert refuse(incoming, stored) is None


@pytest.mark.parametrize(("stored", "incoming", "reason"), NEAR_MISSES)
def test_near_misses_from_the_data_are_refused(stored: str, incoming: str, reason: str) -> None:
    assert refuse(stored, incoming) == reason
    assert refuse(incoming, stored) is not None


@needs_data
def test_pairs_are_real_lines_of_the_data() -> None:
    texts: set[str] = set()
    for path in DATA.glob("*.jsonl"):
        if "gptcache" not in path.name:
            texts.update(json.loads(line)["text"] for line in path.read_text().splitlines())
    quoted = [t for pair in PARAPHRASES for t in pair] + [t for a, b, _ in NEAR_MISSES for t in (a, b)]
    assert [t for t in quoted if t not in texts] == []


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("I need twenty five dollars", "I need $25"),
        ("I need twenty-five dollars", "I need 25 USD"),
        ("Send two hundred euros", "Send 200 €"),
        ("Send 1,000 pounds", "Send £1000"),
        ("It costs 2.50", "It costs 2.5"),
        ("Cancel my second card", "Cancel my 2nd card"),
        ("Check the tutorials first", "Start with the tutorials"),  # "first" as an adverb
        ("How do I get a new one?", "How do I get a new card?"),  # "one" as a pronoun
        ("Can one transfer abroad?", "Is it possible to transfer abroad?"),
        ("Wait a second", "Wait"),
        ("Where is my card?", "Where's my card??"),
        ("weather in paris", "Weather in Paris"),  # case differs: the same place
        ("PyTorch has a DataLoader", "the data loader in pytorch: DataLoader"),
        ("I don\u2019t have my card", "I do not have my card"),  # a typographic apostrophe
        ("WHY IS MY CARD BLOCKED", "Why is my card blocked?"),  # shouting names nothing
        ("Is it non-refundable?", "Can I not get a refund?"),
        ("Is version v2.10.0 out?", "Is 2.10.0 out yet?"),
    ],
)
def test_passes(a: str, b: str) -> None:
    assert refuse(a, b) is None, refuse(a, b)


@pytest.mark.parametrize(
    ("a", "b", "reason"),
    [
        ("Transfer $50 to savings", "Transfer $500 to savings", "numbers differ: 50 vs 500"),
        ("Five nights in Rome", "Seven nights in Rome", "numbers differ: 5 vs 7"),
        ("My first card", "My third card", "numbers differ: 1st vs 3rd"),
        ("Book for twenty-one", "Book for 22", "numbers differ: 21 vs 22"),
        ("two or three days", "three or two days", None),  # sets: order does not matter
        ("Why was my card declined", "Why wasn't my card declined", "negation differs"),
        ("Why was my card declined", "Why was my card never declined", "negation differs"),
        ("I cant log in", "I can log in", "negation differs"),
        ("Will it work?", "It won't work?", "negation differs"),
        ("Flights to Paris", "Flights to Rome", "entities differ: Paris vs Rome"),
        ("What is my IBAN?", "What is my SWIFT code?", "entities differ: IBAN vs SWIFT"),
        ("Reset the XR-200 router", "Reset the XR-300 router", "numbers differ: 200 vs 300"),
        ("Reset the A320 manual", "Reset the B737 manual", "entities differ: A320 vs B737"),
        ("Is gpt-4o cheaper?", "Is gpt-4.1 cheaper?", "numbers differ: 4 vs 4.1"),
        (
            "Email me at ann@example.com",
            "Email me at bob@example.com",
            "entities differ: ann@example.com vs bob@example.com",
        ),
        (
            "Summarise https://a.example/x",
            "Summarise https://a.example/y.",
            "entities differ: https://a.example/x vs https://a.example/y",
        ),
        (
            "How do I use interleave_datasets?",
            "How do I use concatenate_datasets?",
            "entities differ: interleave_datasets vs concatenate_datasets",
        ),
    ],
)
def test_refusals(a: str, b: str, reason: str | None) -> None:
    assert refuse(a, b) == reason


def test_identical_queries_always_pass() -> None:
    assert refuse("Transfer $50 to Paris", "Transfer $50 to Paris") is None


@needs_data
def test_false_refusals_on_gptcache_duplicates_stay_below_ten_percent() -> None:
    """Every GPTCache mock pair is a duplicate: each refusal is a false one."""
    rows = [json.loads(line) for line in (DATA / "gptcache-mock-pairs.jsonl").read_text().splitlines()]
    assert all(row["duplicate"] for row in rows)
    refused = sum(refuse(row["a"], row["b"]) is not None for row in rows)
    rate = refused / len(rows)
    print(f"false refusals on {len(rows)} duplicate pairs: {refused} ({rate:.1%})")
    assert rate < 0.10


@needs_data
def test_fast_enough() -> None:
    """Budget: ~50 µs a pair. Measured cold (nothing memoised) on banking77 queries; the bound here is
    looser than the budget because the test machine is shared.
    """
    texts = [json.loads(line)["text"] for line in (DATA / "banking77-test.jsonl").read_text().splitlines()]
    pairs = list(zip(texts[:1000], texts[1000:2000], strict=True))
    best = float("inf")
    for _ in range(3):  # the best of three: other processes share the machine
        guards._features.cache_clear()
        start = time.perf_counter()
        for a, b in pairs:
            refuse(a, b)
        best = min(best, time.perf_counter() - start)
    per_pair = best / len(pairs)
    print(f"refuse(): {per_pair * 1e6:.1f} µs a pair, cold")
    assert per_pair < 150e-6
