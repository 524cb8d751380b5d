"""Ingest: MQTT messages to validated readings."""
