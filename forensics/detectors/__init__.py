"""detectors stage."""
