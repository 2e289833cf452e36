"""One exception hierarchy for everything a request can fail on.

The protocol adapter renders a `FareGateError` in the client's wire format with `status`;
`kind` is what the ledger records as the error kind.
"""

from __future__ import annotations


class FareGateError(Exception):
    status = 500
    kind = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(FareGateError):
    status = 400
    kind = "invalid_request"


class AuthenticationFailed(FareGateError):
    status = 401
    kind = "authentication_error"


class PermissionDenied(FareGateError):
    """A known client asked for something its key does not allow (a model outside its allow-list)."""

    status = 403
    kind = "permission_denied"


class ModelNotFound(FareGateError):
    status = 404
    kind = "model_not_found"


class RequestTooLarge(FareGateError):
    status = 413
    kind = "request_too_large"


class RateLimited(FareGateError):
    status = 429
    kind = "rate_limited"


class UpstreamUnavailable(FareGateError):
    """The provider could not be reached (connection refused, DNS, reset)."""

    status = 502
    kind = "upstream_unavailable"


class UpstreamTimeout(FareGateError):
    status = 504
    kind = "upstream_timeout"


class ConfigError(Exception):
    """Invalid configuration; raised at start-up with the offending key in the message."""
