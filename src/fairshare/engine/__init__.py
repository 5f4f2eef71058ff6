"""The allocation engine: pure functions from a Scenario to an Allocation (no I/O)."""
