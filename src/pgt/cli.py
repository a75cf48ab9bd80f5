"""The `pgt` command line: `pgt COMMAND --help` shows each command with examples.

Each area of the package registers its own commands; heavy imports (torch,
transformers) happen inside the handlers so that `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from pgt import __version__
from pgt.errors import PgtError, SettingError
from pgt.io import environment_error
from pgt.options import quiet_library_progress, show_progress
from pgt.settings import flag_error

# Modules that define `register(subparsers)`, in the order their commands are listed.
COMMAND_MODULES = (
    "pgt.substrate.cli",  # substrate build|show, tokenize
    "pgt.model.cli",  # info, init, generate
    "pgt.compose.cli",  # merge, tune
    "pgt.data.cli",  # data prepare
    "pgt.growth.cli",  # grow
    "pgt.eval.cli",  # eval, report
    "pgt.demo",  # demo
    "pgt.study.cli",  # study
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgt",
        description="Build, grow, merge and evaluate Progressive Growth Transformers.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `pgt COMMAND --help` for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"pgt {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not show_progress(args):
        quiet_library_progress()
    try:
        return int(args.handler(args) or 0)
    except PgtError as exc:
        # a library names a bad setting by its keyword; the command line names it by its option
        print(f"error: {flag_error(exc) if isinstance(exc, SettingError) else exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        message = environment_error(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The `pgt` program: `main()`'s exit status. A torchrun worker ends at once after its command (every file
    written and closed): FSDP2's gloo group outlives `destroy_process_group` (torch's DTensor caches keep its
    device mesh), so the interpreter's own teardown would stop its C++ threads in no set order, and a rank
    once aborted there ("terminate called without an active exception") after a finished run."""
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
