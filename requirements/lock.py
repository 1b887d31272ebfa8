"""The lock: every package a fresh clone installs, at one exact version with the hash of its file.

``python requirements/lock.py`` (``make lock``) resolves ``pyproject.toml`` with pip itself (``pip install --dry-run
--report``), so the resolution is the one pip makes on this machine, the local CPU wheel of torch included, and
writes three files from one resolution:

    dev.lock     the project with every extra (serving, ``[train]``, ``[dev]``): what ``make setup`` and CI install
    train.lock   serving and ``[train]``: the Docker build stage (the ONNX export)
    serve.lock   serving only (the base dependencies, no torch): the runtime image, a serve-only install

``train.lock`` and ``serve.lock`` are resolved under ``dev.lock``'s versions, so the three never disagree. Each file
starts with a digest of ``pyproject.toml``'s requirements; ``python requirements/lock.py --check`` (``make
check-lock``, run by CI) fails when the digest or any requirement no longer matches, that is, when someone changed
the dependencies and did not run ``make lock``.

pip-tools' ``pip-compile --generate-hashes`` was measured first: with this machine's extra package indexes it
downloads every file of every candidate to hash it, and had not finished after 10 minutes. pip's report carries the
hash of the one file it chose, in 40 seconds. The hashes are therefore those of this platform's files (Linux x86_64,
CPython 3.11, the platform of CI and of the Docker image).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "requirements"
LOCKS = {"dev": ".[dev]", "train": ".[train]", "serve": "."}
"""Lock file (``requirements/<name>.lock``) -> what it installs."""
PROJECT = "adaptive-query-router"
_DIGEST = re.compile(r"^# pyproject-requirements: sha256=([0-9a-f]{64})$", re.M)
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)", re.M)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_digest(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """A digest of what ``pyproject.toml`` asks for: the base requirements and every extra's, in order."""
    project = tomllib.loads(pyproject.read_text())["project"]
    asked = {"dependencies": project["dependencies"], "extras": project.get("optional-dependencies", {})}
    return hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()


def resolve(target: str, constraints: dict[str, str] | None = None) -> list[dict]:
    """pip's resolution of ``target`` (installed as if into an empty environment): the report's ``install`` list."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
        command += ["--report", str(report), target]
        if constraints:
            pins = Path(scratch) / "constraints.txt"
            pins.write_text("".join(f"{name}=={version}\n" for name, version in sorted(constraints.items())))
            command += ["--constraint", str(pins)]
        subprocess.run(command, check=True, cwd=ROOT)  # noqa: S603  # our own interpreter and arguments
        installs: list[dict] = json.loads(report.read_text())["install"]
    return [item for item in installs if normalise(item["metadata"]["name"]) != PROJECT]


def render(name: str, installs: list[dict], digest: str) -> str:
    lines = [
        f"# The lock of {LOCKS[name]!r}, written by `make lock` (requirements/lock.py) from pyproject.toml.",
        f"# pyproject-requirements: sha256={digest}",
        "# Install with: pip install --require-hashes -r requirements/" + name + ".lock && pip install --no-deps .",
    ]
    for item in sorted(installs, key=lambda i: normalise(i["metadata"]["name"])):
        meta, download = item["metadata"], item["download_info"]
        sha256 = download.get("archive_info", {}).get("hashes", {}).get("sha256")
        if sha256 is None:
            raise SystemExit(f"{meta['name']}: pip reported no sha256 for {download['url']}")
        lines.append(f"{normalise(meta['name'])}=={meta['version']} \\\n    --hash=sha256:{sha256}")
    return "\n".join(lines) + "\n"


def pins(text: str) -> dict[str, str]:
    return {normalise(name): version for name, version in _PIN.findall(text)}


def write() -> None:
    digest = requirements_digest()
    dev = resolve(LOCKS["dev"])
    versions = {normalise(i["metadata"]["name"]): i["metadata"]["version"] for i in dev}
    for name in LOCKS:
        installs = dev if name == "dev" else resolve(LOCKS[name], versions)
        (HERE / f"{name}.lock").write_text(render(name, installs, digest))
        print(f"requirements/{name}.lock: {len(installs)} packages")


def check(root: Path = ROOT) -> list[str]:
    """What disagrees between ``root``'s ``pyproject.toml`` and its lock files (empty when they agree)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # a bare interpreter: pip's own copy
        from pip._vendor.packaging.requirements import Requirement

    problems = []
    here = root / "requirements"
    digest = requirements_digest(root / "pyproject.toml")
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    dev = pins((here / "dev.lock").read_text()) if (here / "dev.lock").is_file() else {}
    wanted = {"dev": [*project["dependencies"], *(r for reqs in extras.values() for r in reqs)],
              "train": [*project["dependencies"], *extras.get("train", [])],
              "serve": project["dependencies"]}  # fmt: skip
    for name, requirements in wanted.items():
        path = here / f"{name}.lock"
        if not path.is_file():
            problems.append(f"{path.relative_to(root)} is missing: run `make lock`")
            continue
        text = path.read_text()
        found = _DIGEST.search(text)
        if not found or found.group(1) != digest:
            problems.append(f"{path.relative_to(root)} was locked from other requirements: run `make lock`")
        locked = pins(text)
        for line in requirements:
            requirement = Requirement(line)
            if normalise(requirement.name) == PROJECT or (requirement.marker and not requirement.marker.evaluate()):
                continue
            version = locked.get(normalise(requirement.name))
            if version is None:
                problems.append(f"{path.relative_to(root)} lacks {requirement.name} ({line})")
            elif not requirement.specifier.contains(version, prereleases=True):
                problems.append(f"{path.relative_to(root)} pins {requirement.name}=={version}, outside {line!r}")
        problems += [
            f"{path.relative_to(root)} pins {package}=={version} but dev.lock has {dev[package]}"
            for package, version in locked.items()
            if package in dev and dev[package] != version
        ]
        if text.count("--hash=sha256:") != len(locked):
            problems.append(f"{path.relative_to(root)}: every pin needs its --hash")
    return problems


def check_environment(lock: str = "dev") -> list[str]:
    """What this interpreter's environment has that differs from ``requirements/<lock>.lock``: a locked package
    missing or at another version, or a package the lock does not name (the project itself and what every new
    virtualenv starts with aside)."""
    from importlib import metadata

    locked = pins((HERE / f"{lock}.lock").read_text())
    installed = {normalise(d.metadata["Name"]): d.version for d in metadata.distributions()}
    problems = [
        f"{name}=={version} is locked but {installed.get(name, 'not installed')} is installed"
        for name, version in sorted(locked.items())
        if installed.get(name) != version
    ]
    extra = sorted(set(installed) - set(locked) - {"pip", "setuptools", "wheel", PROJECT})  # a new venv's own
    return problems + [f"{name}=={installed[name]} is installed but not in the lock" for name in extra]


def _report(problems: list[str]) -> int:
    for problem in problems:
        print(f"lock: {problem}", file=sys.stderr)
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when pyproject.toml and the lock disagree")
    parser.add_argument(
        "--check-env", metavar="LOCK", help="fail when this environment is not exactly requirements/LOCK.lock"
    )
    args = parser.parse_args()
    if args.check:
        return _report(check())
    if args.check_env:
        return _report(check_environment(args.check_env))
    write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
