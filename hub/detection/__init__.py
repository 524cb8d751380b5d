"""Detection: choosing the cameras that see a place, grabbing their frames, finding objects."""
