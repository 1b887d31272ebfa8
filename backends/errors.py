"""Errors raised by backends. The service maps them to HTTP responses in one place.

BackendError                 any failure talking to a backend
├── BackendTimeout           connect/read/total timeout elapsed
├── BackendUnavailable       connection refused/reset, DNS failure: the server is not reachable
│   └── CircuitOpen          not called at all: its circuit breaker is open after recent failures
├── BackendSaturated         not called at all: its concurrency cap is reached
├── UpstreamError            the server answered with an error status (vLLM's {"error": {...}} body parsed)
│   └── ModelNotFound        404 for an unknown model or LoRA adapter: a configuration error
└── RetrievalError           the document store failed (LanceDB open, search or write)
"""

from __future__ import annotations


class BackendError(Exception):
    """A backend failed; ``backend`` names which one (``llm``, ``retrieval``)."""

    def __init__(self, message: str, *, backend: str) -> None:
        super().__init__(message)
        self.backend = backend


class BackendTimeout(BackendError):
    pass


class BackendUnavailable(BackendError):
    pass


class CircuitOpen(BackendUnavailable):
    pass


class BackendSaturated(BackendError):
    pass


class UpstreamError(BackendError):
    """An error status from the server, with the fields of vLLM's error body where it sent them."""

    def __init__(
        self,
        message: str,
        *,
        backend: str,
        status: int,
        error_type: str | None = None,
        param: str | None = None,
        code: int | str | None = None,
    ) -> None:
        super().__init__(message, backend=backend)
        self.status = status
        self.error_type = error_type
        self.param = param
        self.code = code


class ModelNotFound(UpstreamError):
    """The server does not serve the configured model or adapter name."""


class RetrievalError(BackendError):
    def __init__(self, message: str) -> None:
        super().__init__(message, backend="retrieval")
