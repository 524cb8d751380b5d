"""Object-detection backends: one config class and one `Detector` per kind, and a registry."""
