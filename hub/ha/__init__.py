"""High availability: which of a pair of hubs is the active one (hub.ha.leader)."""
