"""``router thresholds show|set|calibrate|evaluate|history|rollback``: the thresholds API of a running service.

The service is ``client.url`` (default: ``http://<server.host>:<server.port>``) and the key is ``client.api_key``
(default: ``server.admin_api_key``); ``--url`` and ``--key`` override both. Output is a short human summary, or the
API's JSON with ``--json``. A refused request prints the service's reason and exits 1; an unreachable service exits 3.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import httpx

from models.routes import ROUTES
from router.lib.settings import Settings


class ServiceError(RuntimeError):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("thresholds", help="show, change, calibrate and roll back a running service's thresholds")
    parser.add_argument("--url", help="service base URL (default: client.url)")
    parser.add_argument("--key", help="admin API key (default: client.api_key, then server.admin_api_key)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON answer")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("show", help="the live thresholds, knob, version and the mix they produce")
    change = actions.add_parser("set", help="set thresholds and/or the knob (unset ones keep their live value)")
    _values(change)
    change.add_argument("--note", default="", help="why, for the audit trail")
    calibrate = actions.add_parser("calibrate", help="propose thresholds for a target mix (--apply to set them)")
    for route in ROUTES:
        calibrate.add_argument(f"--{route}", type=float, dest=f"mix_{route}", help=f"target share of {route}")
    _source(calibrate)
    calibrate.add_argument("--apply", action="store_true", help="set the proposal as a new version")
    calibrate.add_argument("--note", default="", help="why, for the audit trail (with --apply)")
    evaluate = actions.add_parser("evaluate", help="what-if: the mix, success and cost of proposed thresholds")
    _values(evaluate)
    _source(evaluate)
    history = actions.add_parser("history", help="the newest versions, newest first")
    history.add_argument("--limit", type=int, default=20)
    rollback = actions.add_parser("rollback", help="re-apply an earlier version as a new one")
    rollback.add_argument("version", type=int)


def _values(parser: argparse.ArgumentParser) -> None:
    for route in ROUTES:
        parser.add_argument(f"--{route}", type=float, help=f"{route} threshold (0..1)")
    parser.add_argument("--cost-weight", type=float, help="the knob (0..10)")


def _source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", choices=["traffic", "outcomes"], default="traffic")
    parser.add_argument("--window", type=int, help="traffic: the latest N decisions")
    parser.add_argument("--split", help="outcomes: rows of this split")


class Client:
    def __init__(self, url: str, key: str | None, timeout: float) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        try:
            response = self.http.request(method, path, json=body, params=params or None)
        except httpx.TransportError as exc:
            raise ServiceError(f"cannot reach the service at {self.url} ({exc})", 3) from exc
        if response.status_code >= 400:
            try:
                problem = response.json()
                detail = problem.get("detail") or problem
                errors = problem.get("errors")
            except ValueError:
                detail, errors = response.text, None
            extra = f" {json.dumps(errors)}" if errors else ""
            raise ServiceError(f"{method} {path}: {response.status_code} {detail}{extra}", 1)
        return response.json()


def _scored(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"source": args.source}
    if args.window is not None:
        body["window"] = args.window
    if args.split is not None:
        body["split"] = args.split
    return body


def _proposed(args: argparse.Namespace, client: Client) -> dict[str, Any]:
    """Thresholds and knob from the flags; unset ones take their live value."""
    given = {route: getattr(args, route) for route in ROUTES if getattr(args, route) is not None}
    live = client.call("GET", "/v1/thresholds") if len(given) < len(ROUTES) or args.cost_weight is None else {}
    knob = args.cost_weight if args.cost_weight is not None else live["cost_weight"]
    return {"thresholds": (live.get("thresholds") or {}) | given, "cost_weight": knob}


def run(args: argparse.Namespace, settings: Settings) -> int:
    secret = settings.client.api_key or settings.server.admin_api_key
    key = args.key or (secret.get_secret_value() if secret else None)
    client = Client(args.url or settings.client_url, key, settings.client.timeout)
    try:
        answer = _act(args, client)
    except ServiceError as exc:
        print(f"router thresholds {args.action}: error: {exc}", file=sys.stderr)
        return exc.code
    finally:
        client.http.close()
    print(json.dumps(answer, indent=2) if args.json else render(args.action, answer))
    return 0


def _act(args: argparse.Namespace, client: Client) -> Any:
    action = args.action
    if action == "show":
        return client.call("GET", "/v1/thresholds")
    if action == "history":
        return client.call("GET", "/v1/thresholds/history", limit=args.limit)
    if action == "rollback":
        return client.call("POST", "/v1/thresholds/rollback", {"version": args.version})
    if action == "set":
        return client.call("PUT", "/v1/thresholds", _proposed(args, client) | {"note": args.note})
    if action == "evaluate":
        return client.call("POST", "/v1/thresholds/evaluate", _proposed(args, client) | _scored(args))
    target = {route: share for route in ROUTES if (share := getattr(args, f"mix_{route}")) is not None}
    proposal = client.call("POST", "/v1/thresholds/calibrate", {"target_mix": target} | _scored(args))
    if not args.apply:
        return proposal
    note = args.note or f"calibrated to {json.dumps(target)} on {proposal['source']}"
    body = {"thresholds": proposal["thresholds"], "cost_weight": proposal["cost_weight"], "note": note}
    return {"proposal": proposal, "applied": client.call("PUT", "/v1/thresholds", body)}


def _values_line(answer: dict[str, Any]) -> str:
    thresholds = " ".join(f"{route}>={answer['thresholds'][route]:.6g}" for route in ROUTES)
    return f"thresholds {thresholds}  cost_weight {answer['cost_weight']:.6g}"


def _mix_line(expected: dict[str, Any] | None) -> str:
    if expected is None:
        return "expected: (fewer than 20 recent decisions)"
    mix = " ".join(f"{route} {expected['mix'][route]:6.1%}" for route in ROUTES)
    em = f"  EM {expected['em']:.3f}" if expected.get("em") is not None else ""
    return (
        f"mix {mix}  success {expected['success']:.3f}  cost {expected['cost']:.2f}{em}  "
        f"({expected['queries']} queries)"
    )


def _view(answer: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"version {answer['version']}  set {answer['updated_at']} by {answer['updated_by']}",
            _values_line(answer),
            _mix_line(answer.get("expected")),
        ]
    )


def render(action: str, answer: Any) -> str:
    if action in ("show", "set", "rollback"):
        return _view(answer)
    if action == "history":
        return "\n".join(
            f"v{e['version']:<4} {e['updated_at']}  {e['action']:<16} {_values_line(e)}  {e['updated_by']}"
            + (f"  # {e['note']}" if e["note"] else "")
            for e in answer
        )
    if action == "evaluate":
        return "\n".join(
            [
                f"on {answer['source']}",
                f"current   {_mix_line(answer['current'])}",
                f"proposed  {_mix_line(answer['proposed'])}",
                f"          {_values_line(answer)}",
            ]
        )
    proposal = answer.get("proposal", answer)
    lines = [
        f"on {proposal['source']}",
        f"proposal  {_values_line(proposal)}",
        f"expected  {_mix_line(proposal['expected'])}  (L1 distance to target {proposal['distance']:.3f})",
    ]
    if "applied" in answer:
        lines.append(f"applied as version {answer['applied']['version']}")
    else:
        lines.append("not applied: run again with --apply, or `router thresholds set` with these values")
    return "\n".join(lines)
