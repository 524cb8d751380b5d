"""Continuous analysis of camera streams: `hub streams` workers (see docs/streams.md)."""
