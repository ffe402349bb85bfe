"""The ``lstmconvert`` command line: one module per subcommand, ``main(argv)`` for in-process tests.

User errors (``LstmConvertError``) print one line, ``lstmconvert: error: <file>: <problem>``, and exit 2;
click's own usage errors exit 2 as well.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Optional, Sequence

import click

from ..errors import LstmConvertError
from .commands import cli


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; return the exit code (0 ok, 1 mismatch found by verify/roundtrip, 2 bad input)."""
    previous, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        result = cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except LstmConvertError as exc:
        if os.environ.get("LSTMCONVERT_DEBUG"):
            raise
        click.echo(f"lstmconvert: error: {_one_line(str(exc))}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("lstmconvert: aborted", err=True)
        return 2
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    finally:
        warnings.showwarning = previous  # in-process callers (tests, scripts) keep their own handler
    return result if isinstance(result, int) else 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    from .. import progress

    progress.clear()  # a bar on the same terminal would garble the line
    click.echo(f"lstmconvert: warning: {_one_line(str(message))}", err=True)


def entry_point() -> None:  # pragma: no cover - thin wrapper for the console script
    sys.exit(main())
