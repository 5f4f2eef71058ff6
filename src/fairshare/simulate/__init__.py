"""Trace-driven simulator: replay a GPU cluster's job history under several policies.

`trace` loads jobs, `engine` replays them round by round under one policy (`policies`),
`metrics` turns a replay into the numbers a committee compares, `report` writes them out.
"""
