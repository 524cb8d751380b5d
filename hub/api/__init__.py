"""The hub's HTTP interface."""

from hub.api.server import HealthReport, build_app, serve_http

__all__ = ["HealthReport", "build_app", "serve_http"]
