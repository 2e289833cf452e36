"""Offline log analysis: savings simulation and reports (terminal, HTML, JSON)."""
