"""Wanted-vehicle plates: the watch-list the hub keeps, and the plate stage of stream workers."""
