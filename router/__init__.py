"""The adaptive query router service: one sub-package per feature.

    server/       the app factory, its lifespan and the resources it opens: the one wiring place
    lib/          cross-cutting: settings, errors and the one error mapper, limits, auth, rate limits, middleware,
                  OpenAPI, logging, metrics
    routing/      the request path: decide (embed, score, policy), answer (the plan of fallbacks), record
    thresholds/   the live, versioned thresholds: store, hot swap, what-if, calibration
    routing_log/  the durable routing log: writer, reader, stats, drift
    documents/    ingestion and the documents API
    dashboard/    the operator page
    cli/          the ``router`` command

A request: ``lib`` (request id, rate limit, auth, body limits) -> a ``routing`` controller -> ``RouterService``:
``Decider`` -> ``Answerer`` -> one ``RoutingRecord`` handed to its sinks (log line, metrics, routing log, recent
traffic) -> the response. Layers point down (cli -> server -> routing_log | documents | dashboard -> routing ->
thresholds -> lib) and only controllers, ``lib``'s HTTP modules and ``server`` import litestar; ``.importlinter``
holds the contracts that ``make lint`` checks. ``docs/architecture.md`` has the whole map.
"""
