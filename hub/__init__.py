"""hub: an event-driven IoT disaster-monitoring hub."""

__version__ = "0.1.0"
