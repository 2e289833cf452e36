"""The ASGI server: app factory, gateway state and (later) admin API, dashboard and metrics."""

from faregate.server.app import create_app

__all__ = ["create_app"]
