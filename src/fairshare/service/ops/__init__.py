"""The service's use cases: one function per state change, one transaction each, shared by the API, the web pages and the CLI."""
