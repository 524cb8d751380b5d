"""Notifications: webhooks, MQTT, e-mail and CAP 1.2 alerts, one message per incident change.

Kept free of imports: hub.config reads this package's `config` module.
"""
