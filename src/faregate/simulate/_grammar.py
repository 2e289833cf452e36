"""A tiny template grammar and the vocabularies of the three simulated products.

Everything the simulator writes (help-centre articles, contracts, earnings reports, system prompts,
user messages, assistant replies) is filled in from these templates with a seeded `random.Random`,
so a workload is varied enough to look like traffic yet identical for a given seed. The text only
has to be plausible English of realistic length: what matters for cost is how many tokens each part
of a request has, and which parts repeat.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from random import Random

_SLOT = re.compile(r"\{(\w+)\}")


class Grammar:
    """Templates with `{slot}` placeholders; slot values may hold placeholders themselves."""

    def __init__(self, slots: Mapping[str, Sequence[str]], templates: Sequence[str]) -> None:
        self.slots = slots
        self.templates = templates

    def fill(self, template: str, rng: Random) -> str:
        text = template
        for _ in range(4):  # nested slots, a few levels deep at most
            if "{" not in text:
                break
            text = _SLOT.sub(lambda m: rng.choice(self.slots[m.group(1)]), text)
        return text[:1].upper() + text[1:]

    def sentence(self, rng: Random) -> str:
        return self.fill(rng.choice(self.templates), rng)


COMPANIES = (
    "Acme Logistics Ltd",
    "Brightwater Analytics Inc",
    "Cobalt Health Systems",
    "Delta Freight GmbH",
    "Evergreen Foods plc",
    "Fjord Energy AS",
    "Granite Software LLC",
    "Harbor Retail Group",
    "Ironwood Manufacturing",
    "Juniper Biotech SA",
    "Keystone Insurance Co",
    "Lakeside Hospitality",
)

# --- Northwind Bank: help-centre articles, support replies, support rules -------------------------
BANK_SLOTS: dict[str, tuple[str, ...]] = {
    "action": (
        "order a replacement card",
        "freeze your card",
        "change your PIN",
        "top up by bank transfer",
        "request a refund",
        "cancel a scheduled transfer",
        "verify your identity",
        "update your address",
        "add your card to Apple Pay or Google Pay",
        "dispute a card payment",
        "close your account",
        "reset your passcode",
        "order a disposable virtual card",
        "check the status of a transfer",
    ),
    "where": (
        "in the app under Cards",
        "in the app under Account, then Settings",
        "from the Payments tab",
        "in the Help section of the app",
        "on the web dashboard",
        "through in-app chat",
    ),
    "screen": (
        "Cards",
        "Payments",
        "Account",
        "Settings, then Security",
        "Help",
        "Transfers, then Scheduled",
    ),
    "button": ("Manage card", "Report a problem", "View details", "Get help", "Change", "Freeze"),
    "product": (
        "a physical debit card",
        "a virtual card",
        "a disposable virtual card",
        "a replacement card",
        "an international transfer",
        "a domestic transfer",
        "a card top-up",
        "a refund from a merchant",
        "a cash withdrawal",
    ),
    "process": ("is processed", "arrives", "is usually completed", "shows as completed", "is delivered"),
    "time": (
        "one to three business days",
        "up to five business days",
        "a few minutes",
        "24 hours",
        "up to 10 business days",
        "two to four weeks for international deliveries",
        "the next business day",
        "up to 30 minutes",
    ),
    "fee": (
        "nothing",
        "2% of the amount, with a minimum of 1 GBP",
        "0.5% of the amount",
        "a flat fee of 1.99 GBP",
        "0.4% above the interbank rate",
        "4.99 GBP for express delivery",
    ),
    "fee_item": (
        "ATM withdrawals above your monthly allowance",
        "card top-ups from a credit card",
        "currency exchange at weekends",
        "express card delivery",
        "international transfers",
        "a replacement for a lost card",
    ),
    "plan": ("Standard", "Plus", "Premium", "Metal"),
    "condition": (
        "the merchant has not yet captured the payment",
        "the payment still shows as pending",
        "your identity has not been verified yet",
        "the card has not been activated",
        "you are travelling abroad",
        "the transfer has not been processed yet",
        "the recipient's bank has already accepted the transfer",
        "you entered a wrong PIN three times",
        "the top-up was made from a card in another name",
    ),
    "outcome": (
        "the amount is returned to your balance automatically",
        "we cannot reverse it from our side and you should contact the merchant",
        "the card is blocked until you unblock it in the app",
        "you need to complete verification before you can continue",
        "the money stays reserved until the merchant releases it",
        "we will refund any fees we charged in error",
        "you can cancel it from the Payments tab at no cost",
    ),
    "security": (
        "we will never ask you for your full PIN or passcode",
        "we only send one-time codes to the phone number on your account",
        "freeze your card straight away if you do not recognise a payment",
        "do not share screenshots of your card details with anyone",
        "we may ask for a selfie to confirm that it is really you",
    ),
    "party": (
        "the merchant",
        "the recipient's bank",
        "the card network",
        "the ATM operator",
        "our payments team",
    ),
    "party_action": (
        "release a pending payment",
        "return a rejected transfer",
        "process a refund",
        "update the exchange rate",
        "confirm the transaction",
    ),
    "detail": (
        "the date and amount of the payment",
        "a screenshot of the error message",
        "the last four digits of your card",
        "the transfer reference",
        "the name of the merchant",
    ),
    "limit": (
        "three wrong PIN attempts",
        "10 top-ups a day",
        "5,000 GBP a day",
        "200 GBP of free ATM withdrawals a month",
        "five disposable cards a day",
        "20,000 GBP a year in top-ups before extra verification",
    ),
    "reset": (
        "at midnight UK time",
        "on the first day of each month",
        "every 24 hours",
        "each calendar year",
    ),
    "doc": (
        "a valid passport",
        "a national identity card",
        "a driving licence",
        "a recent utility bill",
        "a bank statement from the last three months",
    ),
    "currency": ("EUR", "USD", "GBP", "CHF", "PLN", "JPY", "AUD"),
    "country": ("the eurozone", "the United States", "Switzerland", "Poland", "Japan", "Australia"),
}
BANK_TEMPLATES = (
    "you can {action} {where}.",
    "to {action}, open the Northwind app, go to {screen} and tap {button}.",
    "{product} {process} within {time}.",
    "if {condition}, {outcome}.",
    "we charge {fee} for {fee_item}.",
    "{fee_item} cost {fee} on {plan} plans.",
    "for your security, {security}.",
    "please note that {party} may take {time} to {party_action}.",
    "if you still need help after {time}, contact us through in-app chat and include {detail}.",
    "the limit is {limit}, and it resets {reset}.",
    "you will need {doc} to {action}.",
    "in most cases the status changes from pending to completed within {time}.",
    "transfers in {currency} to {country} usually arrive within {time}.",
    "exchange rates for {currency} are updated every few seconds while markets are open.",
    "when {condition}, our team reviews the case and replies within {time}.",
)
BANK_RULE_TEMPLATES = (
    "- Always confirm which card or transfer the customer means before you {action_verb}.",
    "- Never ask for a full card number, PIN, passcode or one-time code.",
    "- If the customer says {customer_says}, {rule_then}.",
    "- When {condition}, explain that {outcome}.",
    "- Quote fees exactly as the fee schedule states: {fee_item} cost {fee} on {plan} plans.",
    "- Mention that {product} {process} within {time} only when the customer asks about timing.",
    "- Use the `{tool}` tool when {tool_when}; do not guess the result.",
    "- Escalate to a human agent when {escalate_when}.",
    "- Keep answers under {words} words unless the customer asks for detail.",
)
BANK_RULE_SLOTS: dict[str, tuple[str, ...]] = {
    **BANK_SLOTS,
    "action_verb": ("look anything up", "quote a fee", "promise a refund", "open a ticket", "freeze a card"),
    "customer_says": (
        "their card was stolen",
        "they were charged twice",
        "a transfer has not arrived",
        "they cannot log in",
        "they want to close their account",
        "they are a victim of fraud",
    ),
    "rule_then": (
        "freeze the card first and then explain how to order a replacement",
        "check the transaction list with the tool before you answer",
        "ask for the transfer reference and the date",
        "send them the passcode reset steps and nothing else",
        "tell them about the 30-day notice and any balance transfer",
        "escalate immediately and stop troubleshooting",
    ),
    "tool": ("get_card_status", "list_recent_transactions", "get_transfer_status", "create_support_ticket"),
    "tool_when": (
        "the customer asks where a card or transfer is",
        "the customer disputes a payment",
        "an answer depends on the customer's own account",
        "the problem cannot be solved in the chat",
    ),
    "escalate_when": (
        "the customer mentions fraud, a legal threat or a complaint",
        "the same problem has come up three times in a conversation",
        "the customer is in financial difficulty",
        "verification has failed twice",
    ),
    "words": ("120", "150", "180", "200"),
}

# --- Contracts and reports: documents and analyses for doc-analysis -------------------------------
LEGAL_SLOTS: dict[str, tuple[str, ...]] = {
    "party": ("Supplier", "Customer", "Licensor", "Licensee", "Service Provider", "Client"),
    "obligation": (
        "deliver the Services in accordance with the Statement of Work",
        "notify the other party in writing of any Security Incident",
        "maintain insurance cover of not less than 5,000,000 USD",
        "provide monthly service level reports",
        "return or destroy all Confidential Information",
        "pay all undisputed invoices",
        "remedy any material breach",
        "obtain the prior written consent of the other party",
    ),
    "period": ("thirty (30) days", "ten (10) business days", "seventy-two (72) hours", "ninety (90) days"),
    "event": (
        "the Effective Date",
        "receipt of a valid invoice",
        "becoming aware of the breach",
        "termination or expiry of this Agreement",
        "written notice from the other party",
    ),
    "notice": ("thirty (30) days'", "sixty (60) days'", "ninety (90) days'", "six (6) months'"),
    "breach": (
        "the other party commits a material breach that is not remedied within thirty (30) days",
        "the other party becomes insolvent or enters into administration",
        "a change of control of the other party occurs",
        "the Services fail to meet the Service Levels for three consecutive months",
    ),
    "cap": (
        "the fees paid in the twelve (12) months preceding the claim",
        "two times the annual contract value",
        "1,000,000 USD",
        "the total fees payable under the relevant Order Form",
    ),
    "payment": ("within thirty (30) days of invoice", "quarterly in advance", "monthly in arrears"),
    "rate": ("1%", "1.5%", "2%"),
    "jurisdiction": ("England and Wales", "the State of New York", "the State of Delaware", "Ireland"),
    "forum": (
        "the courts of London",
        "binding arbitration under the ICC Rules",
        "the state and federal courts located in New York County",
    ),
    "warranty": (
        "the Services will be performed with reasonable skill and care",
        "it holds all licences required to perform its obligations",
        "the Deliverables will not infringe any third-party intellectual property rights",
        "it complies with all applicable anti-bribery laws",
    ),
    "exclusion": (
        "is or becomes publicly available through no fault of the receiving party",
        "was lawfully known to the receiving party before disclosure",
        "is independently developed without use of the disclosing party's information",
    ),
    "num": ("2", "3", "4", "5", "6", "7", "8", "9", "11", "12", "14"),
    "period_fin": ("the third quarter", "the fiscal year", "the first half", "the fourth quarter"),
    "amount": (
        "412.6 million USD",
        "88.3 million EUR",
        "1.27 billion USD",
        "36.9 million GBP",
        "245.0 million USD",
    ),
    "direction": ("up", "down", "broadly flat at"),
    "pct": ("3.2%", "7.5%", "12.1%", "18.4%", "0.9%", "24.0%"),
    "driver": (
        "higher volumes in the enterprise segment",
        "price increases that took effect in March",
        "the acquisition completed last year",
        "weaker demand in Europe",
        "one-off restructuring costs",
        "growth in recurring subscription revenue",
    ),
    "segment": ("Enterprise", "Consumer", "International", "Services", "Platform"),
    "outlook": (
        "revenue growth in the mid single digits",
        "stable margins despite wage inflation",
        "capital expenditure of around 60 million USD",
        "further cost savings from the restructuring programme",
    ),
    "risk": (
        "customer concentration",
        "foreign exchange exposure",
        "rising interest costs on floating-rate debt",
        "supply chain disruption",
        "regulatory changes in data protection",
        "key-person dependency",
    ),
    "clause": (
        "limitation of liability",
        "indemnity",
        "termination for convenience",
        "auto-renewal",
        "data processing",
        "exclusivity",
        "most-favoured customer",
        "change of control",
    ),
    "assessment": (
        "broadly in line with our standard position",
        "more favourable to the counterparty than our template",
        "unusually broad",
        "missing the carve-outs we normally require",
        "acceptable with minor drafting changes",
    ),
    "recommendation": (
        "asking for a mutual cap instead of a one-sided one",
        "deleting the auto-renewal or shortening the notice period to thirty days",
        "adding a carve-out for data protection breaches",
        "escalating this clause to the general counsel before signature",
        "accepting the clause as drafted",
        "requesting the latest audited accounts before relying on these figures",
    ),
    "risk_level": ("low", "medium", "high"),
    "reason": (
        "the cap excludes indirect losses but not lost data",
        "the indemnity is uncapped",
        "termination requires a long notice period",
        "the governing law differs from the master agreement",
        "the numbers are unaudited",
        "the counterparty can assign the contract without consent",
    ),
}
LEGAL_DOC_TEMPLATES = (
    "the {party} shall {obligation} within {period} of {event}.",
    "either party may terminate this Agreement upon {notice} written notice if {breach}.",
    "the {party}'s aggregate liability under this Agreement shall not exceed {cap}.",
    "all fees are payable {payment}, and late payments accrue interest at {rate} per month.",
    "clause {num}.{num} applies notwithstanding anything to the contrary in clause {num}.",
    "this Agreement is governed by the laws of {jurisdiction}, and disputes shall be resolved by {forum}.",
    "the {party} represents and warrants that {warranty}.",
    "confidential Information does not include information that {exclusion}.",
    "revenue for {period_fin} was {amount}, {direction} {pct} year over year, driven by {driver}.",
    "the {segment} segment contributed {pct} of total revenue in {period_fin}.",
    "management expects {outlook} next year.",
    "the company held {amount} in cash and equivalents and {amount} of long-term debt at the period end.",
    "key risks include {risk} and {risk}.",
)
LEGAL_REPLY_TEMPLATES = (
    "clause {num}.{num} ({clause}) is {assessment}.",
    "the {clause} clause is {assessment}, because {reason}.",
    "I recommend {recommendation}.",
    "risk level: {risk_level}, because {reason}.",
    "the {party} must {obligation} within {period} of {event}.",
    "revenue was {direction} {pct}, mainly because of {driver}.",
    "the biggest exposure is {risk}, followed by {risk}.",
    "on balance, the {clause} terms are {assessment}.",
)

# --- Lumen Workspace: product docs, chat requests and replies for chat-assistant -------------------
WORK_SLOTS: dict[str, tuple[str, ...]] = {
    "ws_action": (
        "share a board with a guest",
        "export a project as PDF",
        "set up a recurring task",
        "connect the calendar integration",
        "restore a deleted page",
        "change a workspace owner",
        "create an automation rule",
        "turn on single sign-on",
    ),
    "ws_place": ("the board menu", "Workspace settings", "the page history panel", "the Integrations tab"),
    "ws_option": ("Share", "Export", "Repeat", "Connect", "Restore", "Transfer ownership", "New rule"),
    "ws_feature": (
        "automations",
        "the timeline view",
        "guest access",
        "page history",
        "templates",
        "the API",
    ),
    "ws_capability": (
        "up to 50 rules per board",
        "dependencies between tasks",
        "read-only and comment-only links",
        "version history for 90 days on paid plans",
        "custom fields and filters",
        "webhooks for every event type",
    ),
    "ws_time": ("a few seconds", "about a minute", "15 minutes", "the next sync cycle"),
    "task": (
        "write a short status update",
        "draft an email",
        "turn my notes into a project plan",
        "summarise this meeting",
        "prepare talking points",
        "rewrite this paragraph so it is clearer",
        "outline a proposal",
        "write a job description",
    ),
    "audience": (
        "my manager",
        "the leadership team",
        "a new client",
        "the engineering team",
        "our customers",
        "the board",
    ),
    "topic": (
        "the Q3 product launch",
        "moving our analytics to a new vendor",
        "the hiring plan for next year",
        "the delayed warehouse migration",
        "our customer onboarding process",
        "the office move in March",
    ),
    "point": (
        "we are two weeks behind because the vendor API changed",
        "the budget is fixed but the scope keeps growing",
        "the pilot customers liked the new dashboard",
        "two people on the team are leaving at the end of the month",
        "legal still has to approve the data processing terms",
        "support tickets dropped by a third after the last release",
        "the deadline cannot move because of the trade show",
    ),
    "constraint": (
        "only three engineers available until January",
        "a hard deadline on the 15th",
        "no budget for extra tooling",
        "stakeholders in three time zones",
        "a dependency on another team's release",
    ),
    "tone": ("friendly but professional", "direct", "upbeat", "formal", "reassuring"),
    "length": ("one page", "200 words", "five bullet points", "three short paragraphs"),
    "step": (
        "agree on the goal and the deadline with the stakeholders",
        "list the open risks and give each an owner",
        "split the work into milestones of about two weeks",
        "send a short written summary after the meeting",
        "check which dependencies can be removed",
        "schedule a review with the people who will approve it",
        "write down what is explicitly out of scope",
    ),
    "reaction": (
        "nobody read past the first paragraph",
        "people asked for the numbers behind it",
        "the tone came across as too negative",
        "it started a long email thread",
    ),
    "readers": (
        "senior managers",
        "customers who are not technical",
        "engineers",
        "new joiners",
        "investors",
    ),
    "ending": (
        "a clear ask",
        "the date of the next update",
        "a thank-you to the team",
        "the decision we need",
    ),
    "attempt": (
        "a weekly status email",
        "a shared dashboard",
        "daily stand-ups with the vendor",
        "moving the deadline",
        "hiring contractors",
    ),
    "manager_ask": (
        "keep it under a page",
        "lead with the risks",
        "include a timeline",
        "make the ask explicit",
        "send it before Friday",
    ),
    "draft": (
        "As you may be aware",
        "I wanted to reach out",
        "Quick update on where we are",
        "Following our last meeting",
    ),
    "advice": (
        "lead with the decision you need, then give the context",
        "keep each bullet to one idea",
        "say what changed since the last update before anything else",
        "quantify the impact wherever you can",
        "end with a clear next step and a date",
    ),
}
WORK_DOC_TEMPLATES = (
    "to {ws_action}, open {ws_place} and select {ws_option}.",
    "workspace admins can {ws_action} from Workspace settings.",
    "{ws_feature} supports {ws_capability}.",
    "changes sync to every member's devices within {ws_time}.",
    "if you cannot {ws_action}, check that your plan includes {ws_feature}.",
    "guests can view {ws_feature} but cannot {ws_action}.",
)
WORK_ASK_TEMPLATES = (
    "can you help me {task} for {audience} about {topic}?",
    "I need to {task} for {audience}, and it is about {topic}.",
    "please {task} for {audience}; the subject is {topic}.",
    "could you {task}? It is for {audience} and covers {topic}.",
)
WORK_DETAIL_TEMPLATES = (
    "the main point is that {point}.",
    "we have {constraint}.",
    "my notes say that {point}, and that we have {constraint}.",
    "it should sound {tone} and be no longer than {length}.",
    "some context: {point}.",
    "also worth knowing: {point}.",
    "last time I sent something like this, {reaction}.",
    "the people reading it are {readers}.",
    "please mention that {point}, but do not make it sound like an excuse.",
    "I would like to end with {ending}.",
    "for background, we tried {attempt} last quarter and it did not work.",
    "my manager asked me to {manager_ask}.",
    'if it helps, the current draft starts with "{draft}" and I do not like it.',
    "avoid jargon: {readers} will read it on their phones.",
)
WORK_REPLY_TEMPLATES = (
    "here is a draft you can adapt for {audience}.",
    "{advice}.",
    "first, {step}.",
    "next, {step}.",
    "finally, {step}.",
    "one thing to watch: {point}.",
    "given that you have {constraint}, I would {step}.",
    "for {topic}, the headline is that {point}.",
    "I kept it {tone} and within {length}.",
    "**Subject:** An update on {topic}.",
    "**Next steps:** {step}, then {step}.",
    "if {readers} push back, point out that {point}.",
    "you could open with {ending} instead of the background.",
    "a shorter version would drop the part about {attempt}.",
    "I would not mention that {point} unless someone asks.",
    "the risk section should say that {point} and who owns the fix.",
)

LEGAL_FOCUS_TEMPLATES = (
    "pay particular attention to the {clause} clause.",
    "we care most about {clause} and {clause}.",
    "assume we are the {party} in every document.",
    "flag anything that creates {risk} for us.",
    "the business wants to sign by the end of the month, so prioritise what would block signature.",
    "ignore boilerplate unless it differs from our template.",
    "our standard cap is {cap}; compare against that.",
    "we would prefer {jurisdiction} law and {forum}.",
    "note every notice period and whether it is {notice} or longer.",
    "if revenue moved by more than {pct}, explain why.",
    "keep the summary short, the table can be long.",
    "treat anything about {clause} as high risk by default.",
)

FOLLOW_UPS: dict[str, tuple[str, ...]] = {
    "support-faq": (
        "Thanks. And how long does that usually take?",
        "I tried that already and it still does not work. What else can I do?",
        "Is there a fee for that?",
        "Can I do this from the website instead of the app?",
        "OK, and what happens if it still has not arrived by Friday?",
        "Do I need to verify my identity again for this?",
    ),
    "doc-analysis": (
        "Which of these points would you push back on first, and why?",
        "Can you put the key terms from each document side by side in a table?",
        "Draft a short email to the counterparty raising the two highest risks.",
        "Are there any obligations with deadlines in the next ninety days?",
        "How does the liability position compare with our standard template?",
        "Summarise this for a non-lawyer in five bullet points.",
    ),
}
