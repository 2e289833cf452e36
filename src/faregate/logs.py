"""Structured logs: one JSON object a line when not on a TTY; never secrets, never prompt text.

Secrets reach log lines by accident (an exception message quoting a header, a debug line with a
request's headers), so every line FareGate's handler writes, and every line uvicorn logs, goes through
`SecretRedactor`: the secret values known at start (provider keys, the admin key, any environment
variable named like a key) and the shapes of credentials (`Bearer ...`, `sk-...`, `sk-ant-...`,
`fgk-<id>-<secret>`, `x-api-key: ...`, a password in a URL) are replaced by `[redacted]` in the
message, its arguments, string extras and the traceback. It costs a few regex passes per line written
(about 20 µs); lines filtered out by level never reach it, and the request path logs only on errors.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from faregate.config import Config

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
REDACTED = "[redacted]"
# Shorter values are not registered: redacting every "test" or "1234" would garble logs for nothing.
MIN_SECRET_LENGTH = 8
# Environment variables whose values are treated as secrets when the logging is configured.
_SECRET_ENV_NAME = re.compile(r"(API_?KEY|_KEY$|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+"), rf"\1 {REDACTED}"),
    (re.compile(r"\b(fgk-[0-9a-f]{12})-[A-Za-z0-9_\-]+"), rf"\1-{REDACTED}"),  # keep the key id
    (re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{6,}"), f"sk-ant-{REDACTED}"),
    # A password in a URL (`postgresql://user:password@host/db`): the user stays.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]+):[^\s@/]+@"), rf"\1:{REDACTED}@"),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), f"sk-{REDACTED}"),
    (  # `x-api-key: ...`, `'api_key': '...'`, `authorization=...` (a scheme was handled above)
        re.compile(
            r"(?i)\b(x-api-key|api[_-]?key|authorization)([\"']?\s*[:=]\s*[\"']?)"
            r"(?!(?:bearer|basic)\s|\[redacted\]|sk-)[^\s\"',}]+"
        ),
        rf"\1\2{REDACTED}",
    ),
)


class SecretRedactor(logging.Filter):
    """A filter that rewrites a record so no known secret or credential-shaped string survives."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._known: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str | None]) -> None:
        """Register secret values (provider keys, the admin key) to redact wherever they appear."""
        fresh = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH} - self._secrets
        if not fresh:
            return
        self._secrets |= fresh
        # Longest first, so a key that contains another is redacted whole.
        alternatives = "|".join(re.escape(s) for s in sorted(self._secrets, key=len, reverse=True))
        self._known = re.compile(alternatives)

    def redact(self, text: str) -> str:
        if self._known is not None:
            text = self._known.sub(REDACTED, text)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        # The arguments are redacted one by one rather than merged into the message: formatters
        # read them (uvicorn's access formatter unpacks the 5-tuple of client, method, path ...).
        if isinstance(record.msg, str):
            record.msg = self.redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._redact_arg(arg) for arg in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: self._redact_arg(arg) for key, arg in record.args.items()}
        for key, value in record.__dict__.items():
            if key not in _STANDARD and isinstance(value, str):
                record.__dict__[key] = self.redact(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True

    def _redact_arg(self, value: object) -> object:
        """A format argument without secrets; numbers and untouched objects keep their type."""
        if value is None or isinstance(value, int | float):
            return value
        if isinstance(value, str):
            return self.redact(value)
        text = str(value)  # a dict of headers, an exception: what `%s` would print
        redacted = self.redact(text)
        return value if redacted == text else redacted


def config_secrets(config: Config, environ: Mapping[str, str] | None = None) -> list[str]:
    """The secret values a config makes the gateway hold: provider keys and the admin key."""
    env = os.environ if environ is None else environ
    names = [p.api_key_env for p in config.providers.values()] + [config.server.admin_key_env]
    return [env[name] for name in names if name and env.get(name)]


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables named like credentials (OPENAI_API_KEY, ..._TOKEN, ...)."""
    env = os.environ if environ is None else environ
    return [value for name, value in env.items() if _SECRET_ENV_NAME.search(name)]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info or record.exc_text:
            # The redactor leaves the (redacted) traceback in exc_text; format it only when absent.
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return orjson.dumps(entry, default=str).decode()


# uvicorn logs on its own loggers (with handlers it installs itself): a filter on the logger, not on
# a handler, survives its dictConfig.
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def configure_logging(
    level: str = "info", fmt: str = "auto", secrets: Iterable[str] = (), config: Config | None = None
) -> SecretRedactor:
    """FareGate's handler on the `faregate` logger, with the redactor on it and on uvicorn's loggers.

    Pass `config` (or `secrets`) to register the keys it names; credential-named environment
    variables are registered either way. Returns the redactor so callers can register more.
    """
    redactor = SecretRedactor([*secrets, *environment_secrets()])
    if config is not None:
        redactor.add(config_secrets(config))
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if use_json else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(redactor)
    root = logging.getLogger("faregate")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    for name in _UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, SecretRedactor)]:
            logger.removeFilter(old)
        logger.addFilter(redactor)
    return redactor
