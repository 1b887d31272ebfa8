"""The knowledge base's documents: ingestion and /v1/documents."""
