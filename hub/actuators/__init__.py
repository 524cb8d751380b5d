"""Actuators: barrier, sign, siren and pump commands as persisted, confirmed jobs.

Kept free of imports: hub.config reads this package's `config` module.
"""
