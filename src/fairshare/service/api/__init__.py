"""The HTTP API: FastAPI routes that call the ops and answer in JSON."""
