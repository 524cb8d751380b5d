"""The site inventory: regions, sites, sensors, cameras and actuators, from GeoJSON."""

from hub.inventory.load import INVENTORY_SUFFIXES, inventory_files, load_inventory
from hub.inventory.model import (
    ACTUATOR_KINDS,
    SENSOR_KINDS,
    SITE_TYPES,
    Actuator,
    Camera,
    Inventory,
    Region,
    Sensor,
    Site,
)

__all__ = [
    "ACTUATOR_KINDS",
    "INVENTORY_SUFFIXES",
    "SENSOR_KINDS",
    "SITE_TYPES",
    "Actuator",
    "Camera",
    "Inventory",
    "Region",
    "Sensor",
    "Site",
    "inventory_files",
    "load_inventory",
]
