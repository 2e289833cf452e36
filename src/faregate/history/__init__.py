"""Conversation history policies (window, summary, retrieve): what earlier turns a request sends upstream."""
