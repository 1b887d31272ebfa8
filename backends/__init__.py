"""Adapters to the outside world: the OpenAI-compatible LLM server (vLLM), LanceDB retrieval, generators.

Nothing here imports litestar or the service; callers pass in clients and settings values.
"""
