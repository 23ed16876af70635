"""python3 -m pvsim.config --reference: print docs/reference/config.md, generated from the schema."""

from __future__ import annotations

import sys

from pvsim.config.errors import UsageParser
from pvsim.config.reference import markdown


def main(argv: list[str] | None = None) -> int:
    parser = UsageParser(prog="python3 -m pvsim.config", description=__doc__)
    parser.add_argument("--reference", action="store_true", required=True,
                        help="print the reference of every config key (Markdown)")
    parser.parse_args(argv)
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
