"""``GET /metrics``: the Prometheus text exposition of the app's registry (``router.lib.metrics``)."""

from __future__ import annotations

from litestar import Response, get
from litestar.datastructures import State

from router.lib.metrics import MEDIA_TYPE, Metrics


@get("/metrics", include_in_schema=False, sync_to_thread=False, media_type=MEDIA_TYPE)
def scrape(state: State) -> Response[bytes]:
    """Prometheus text exposition of this app's registry."""
    metrics: Metrics = state.metrics
    return Response(metrics.render(), media_type=MEDIA_TYPE)
