"""The request path: decide, answer, record; the /v1/route, /v1/query, /health, /ready and OpenAI controllers."""
