"""`python -m tools.openapi [--check]`: write docs/openapi.json from the code, or check it is current."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

COMMITTED = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.openapi", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if docs/openapi.json is stale"
    )
    args = parser.parse_args(argv)
    from handlers.openapi import openapi_document

    document = openapi_document()
    if args.check:
        if COMMITTED.exists() and COMMITTED.read_text() == document:
            print("docs/openapi.json is current.")
            return 0
        print("docs/openapi.json is stale - run `python -m tools.openapi` and commit it.", file=sys.stderr)
        return 1
    if COMMITTED.exists() and COMMITTED.read_text() == document:
        print("docs/openapi.json is current - nothing written.")
        return 0
    COMMITTED.write_text(document)
    print("Wrote docs/openapi.json.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
