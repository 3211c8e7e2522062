"""``python -m async_uploader.sandbox``: run the sandbox server."""

from __future__ import annotations

import argparse
import sys

from .cli import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m async_uploader.sandbox", description="Run the InvenioRDM sandbox."
    )
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
