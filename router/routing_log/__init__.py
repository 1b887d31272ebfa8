"""The durable record of each decision: its table, writer, reader, stats and drift (/v1/routing-logs, /v1/stats)."""
