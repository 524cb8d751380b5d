"""Storage of points in InfluxDB (1.x HTTP API), with an on-disk spool for when it is down."""

from hub.storage.influx import (
    InfluxClient,
    InfluxError,
    InfluxRejectedError,
    InfluxUnavailableError,
    Series,
)
from hub.storage.line import point_line, reading_line, reading_prefix
from hub.storage.spool import Spool, SpoolRecord
from hub.storage.writer import StorageWriter

__all__ = [
    "InfluxClient",
    "InfluxError",
    "InfluxRejectedError",
    "InfluxUnavailableError",
    "Series",
    "Spool",
    "SpoolRecord",
    "StorageWriter",
    "point_line",
    "reading_line",
    "reading_prefix",
]
