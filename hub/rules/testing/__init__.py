"""Rule test files: parse them, run them through the engine, compare the events."""
