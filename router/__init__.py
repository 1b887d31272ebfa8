"""The adaptive query router service: HTTP API, orchestration, settings, logging and CLI."""
