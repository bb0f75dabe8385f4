"""lab stage."""
