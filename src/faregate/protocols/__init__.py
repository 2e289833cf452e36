"""Inbound wire formats: parse a client's request into a `Call`, render errors the client's way."""

from faregate.protocols.anthropic_messages import ANTHROPIC_MESSAGES
from faregate.protocols.base import InboundProtocol
from faregate.protocols.openai_chat import OPENAI_CHAT

__all__ = ["ANTHROPIC_MESSAGES", "BY_NAME", "OPENAI_CHAT", "InboundProtocol"]

BY_NAME: dict[str, InboundProtocol] = {"openai": OPENAI_CHAT, "anthropic": ANTHROPIC_MESSAGES}
