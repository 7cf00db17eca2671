"""`python -m tools.invoke EVENT.json`: run a function's handler in-process on an event file, as `sam local invoke -e` would, without Docker.

The function's environment is the one template.yaml gives it (parameters at their defaults), except
that COUNTERS_ROOT points at a local directory instead of the EFS mount; a variable already set in
the shell wins, so `COUNTERS_HISTORY_RETENTION_ROWS=5 .venv/bin/python -m tools.invoke ...` works.
The response goes to stdout as one JSON document; the function's own log and metric lines go to
stderr, as `sam local invoke` separates them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from counter_core import ManifestInvalid, config

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "template.yaml"
DEFAULT_ROOT = Path("var/counters")


class TemplateError(Exception):
    """template.yaml does not describe the function as this tool needs."""


def function_spec(name: str, template_path: Path = TEMPLATE) -> tuple[str, dict[str, str]]:
    """The function's handler ("module.attribute") and environment, parameters at their defaults. Read-only."""
    # A dev dependency (tools are never bundled); it reads the short forms (!Ref, !If) as SAM does.
    from samtranslator.yaml_helper import yaml_parse  # type: ignore[import-untyped]

    template: dict[str, Any] = yaml_parse(template_path.read_text(encoding="utf-8"))
    resource = template.get("Resources", {}).get(name)
    if resource is None or resource.get("Type") != "AWS::Serverless::Function":
        functions = sorted(
            key
            for key, value in template["Resources"].items()
            if value["Type"] == "AWS::Serverless::Function"
        )
        raise TemplateError(
            f"{name!r} is not a function of template.yaml - choose one of {', '.join(functions)}"
        )
    properties = resource.get("Properties", {})
    defaults = {key: str(spec.get("Default", "")) for key, spec in template.get("Parameters", {}).items()}
    environment: dict[str, str] = {}
    for variable, value in properties.get("Environment", {}).get("Variables", {}).items():
        if isinstance(value, str | int | float):
            environment[variable] = str(value)
        elif isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in defaults:
            environment[variable] = defaults[value["Ref"]]
        # Anything else (a queue URL, an ARN) exists only once deployed: left unset here.
    return str(properties["Handler"]), environment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=".venv/bin/python -m tools.invoke", description=__doc__.splitlines()[0]
    )
    parser.add_argument("event", type=Path, help="an event file, for example events/increment.json")
    parser.add_argument(
        "--function", default="ApiFunction", help="a function of template.yaml (default: ApiFunction)"
    )
    parser.add_argument(
        "--root", type=Path, default=DEFAULT_ROOT, help="counter files directory (default: var/counters)"
    )
    args = parser.parse_args(argv)
    try:
        event = json.loads(args.event.read_text(encoding="utf-8"))
    except OSError as exc:
        print(
            f"error: cannot read {args.event} ({exc.strerror}) - pass an event file, such as events/increment.json",
            file=sys.stderr,
        )
        return 2
    except UnicodeDecodeError:
        print(
            f"error: {args.event} is not UTF-8 text - save it as UTF-8 JSON, such as events/increment.json",
            file=sys.stderr,
        )
        return 2
    except json.JSONDecodeError as exc:
        print(
            f"error: {args.event} is not JSON ({exc}) - pass an event file, such as events/increment.json",
            file=sys.stderr,
        )
        return 2
    try:
        handler_name, environment = function_spec(args.function)
    except TemplateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for variable, value in environment.items():
        os.environ.setdefault(variable, value)
    from tools.serve import LocalContext, prepare

    # The template's root is the EFS mount; here the counter files live in a local directory.
    problems = prepare(args.root)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    os.environ[config.ENV_ROOT] = str(args.root.resolve())
    module_name, _, attribute = handler_name.rpartition(".")

    context = LocalContext(aws_request_id=str(uuid.uuid4()), function_name=args.function)
    # Logs and metric lines to stderr: the handler's logger binds the stream it finds at import.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            handler = getattr(importlib.import_module(module_name), attribute)
        except ManifestInvalid as exc:  # the bundle's manifest: the cold start would fail the same way
            print(f"error: {exc}", file=sys.stderr)
            return 2
        response = handler(event, context)
    print(json.dumps(response))
    return 0


if __name__ == "__main__":
    sys.exit(main())
