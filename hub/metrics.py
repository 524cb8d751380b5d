"""Prometheus metrics of the hub, in one registry served at GET /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

# Ingest
MESSAGES_IN = Counter(
    "hub_mqtt_messages_received",
    "MQTT messages received, by topic family",
    ["family"],
    registry=REGISTRY,
)
READINGS_IN = Counter(
    "hub_readings_received", "Readings received (a gateway message holds many)", registry=REGISTRY
)
READINGS_ACCEPTED = Counter(
    "hub_readings_accepted", "Readings that passed validation", registry=REGISTRY
)
READINGS_REJECTED = Counter(
    "hub_readings_rejected",
    "Readings or messages sent to the dead-letter topic, by reason",
    ["reason"],
    registry=REGISTRY,
)
DEADLETTERS_DROPPED = Counter(
    "hub_deadletters_dropped",
    "Dead letters not published: their queue was full, or the broker refused them",
    registry=REGISTRY,
)
DEADLETTER_QUEUE = Gauge(
    "hub_deadletter_queue_depth", "Dead letters waiting to be published", registry=REGISTRY
)

# A pair of hubs (docs/ha.md)
HA_ACTIVE = Gauge(
    "hub_ha_active",
    "1 while this hub is the active one of a pair, 0 on the standby",
    registry=REGISTRY,
)

# Background tasks
TASK_FAILURES = Counter(
    "hub_task_failures",
    "Failures of a background loop or scheduled job (each is logged and it starts again)",
    ["task"],
    registry=REGISTRY,
)

# Storage
POINTS_STORED = Counter(
    "hub_points_stored", "Points written to InfluxDB", ["measurement"], registry=REGISTRY
)
POINTS_SPOOLED = Counter(
    "hub_points_spooled", "Points written to the on-disk spool", registry=REGISTRY
)
POINTS_DROPPED = Counter(
    "hub_points_dropped",
    "Points given up on, by reason (rejected by InfluxDB, a corrupt spool record)",
    ["reason"],
    registry=REGISTRY,
)
STORAGE_BUFFER = Gauge(
    "hub_storage_buffer_points", "Points buffered in memory for InfluxDB", registry=REGISTRY
)
SPOOL_BYTES = Gauge("hub_spool_bytes", "Bytes waiting in the on-disk spool", registry=REGISTRY)
INGEST_PAUSED = Gauge(
    "hub_ingest_paused",
    "1 while the hub reads no messages because storage has no room (the broker holds them)",
    registry=REGISTRY,
)
SPOOL_FULL = Gauge(
    "hub_spool_full",
    "1 while the spool refuses batches (full or its disk failing): readings stay at the broker",
    registry=REGISTRY,
)
SPOOL_POINTS = Gauge("hub_spool_points", "Points waiting in the on-disk spool", registry=REGISTRY)
WRITE_LATENCY = Histogram(
    "hub_influx_write_seconds",
    "Time of one InfluxDB write request",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
INFLUX_UP = Gauge(
    "hub_influx_up", "1 while InfluxDB accepts writes, 0 while the hub spools", registry=REGISTRY
)

# MQTT
MQTT_CONNECTED = Gauge("hub_mqtt_connected", "1 while connected to the broker", registry=REGISTRY)
MQTT_DROPPED = Counter(
    "hub_mqtt_dropped",
    "QoS 0 messages not sent because the broker was not connected",
    registry=REGISTRY,
)
MQTT_REFUSED = Counter(
    "hub_mqtt_refused",
    "QoS 2 messages from the broker refused (the hub takes QoS 0 and 1)",
    registry=REGISTRY,
)
MQTT_RECONNECTS = Counter(
    "hub_mqtt_reconnects", "Connections made after the first", registry=REGISTRY
)


# Rules
RULES_LOADED = Gauge("hub_rules_loaded", "Rules in force", registry=REGISTRY)
RULES_RELOADS = Counter(
    "hub_rules_reloads", "Rule reloads, by result (ok, failed)", ["result"], registry=REGISTRY
)
RULES_VALID = Gauge(
    "hub_rules_valid",
    "0 while the rule files on disk have errors (the last good rules run)",
    registry=REGISTRY,
)
RULE_EVENTS = Counter(
    "hub_rule_events", "Events the rules emitted, by kind", ["event"], registry=REGISTRY
)
INCIDENTS_OPEN = Gauge("hub_incidents_open", "Incidents active or acknowledged", registry=REGISTRY)
STATE_PERSIST = Histogram(
    "hub_state_persist_seconds",
    "Time to commit the rules' state to the store and sync it",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
JOURNAL_APPEND = Histogram(
    "hub_rules_journal_seconds",
    "Time to commit rule events to the store's journal before they leave the process",
    buckets=(0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
    registry=REGISTRY,
)
OUTBOX = Gauge(
    "hub_outbox_events", "Rule events persisted but not yet dispatched", registry=REGISTRY
)

# Detection
DETECT_JOBS = Counter(
    "hub_detect_jobs", "Detection jobs sent to the workers (resends not counted)", registry=REGISTRY
)
DETECT_RESENT = Counter(
    "hub_detect_resent", "Detection jobs sent again for want of an answer", registry=REGISTRY
)
CAMERA_EVENTS = Counter(
    "hub_camera_events",
    "Camera events from the stream workers by outcome: ok, invalid (unreadable, unknown "
    "camera), duplicate (an event sent twice), out_of_time, not_listed (a plate not on the "
    "watch-list), failed",
    ["outcome"],
)
DETECT_RESULTS = Counter(
    "hub_detect_results",
    "Detection results by outcome: ok, error (camera or model), expired (no answer in time), "
    "duplicate (a job answered twice)",
    ["outcome"],
    registry=REGISTRY,
)
DETECT_PENDING = Gauge("hub_detect_pending", "Detection jobs awaiting a result", registry=REGISTRY)
DETECT_SECONDS = Histogram(
    "hub_detect_seconds",
    "Time from a detection job's first sending to its result",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)

# Actions
ACTIONS = Counter(
    "hub_actions",
    "Actions handed to executors, by kind and result",
    ["kind", "result"],
    registry=REGISTRY,
)


def exposition() -> bytes:
    """The registry in Prometheus' text format."""
    return generate_latest(REGISTRY)
