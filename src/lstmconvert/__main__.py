"""``python -m lstmconvert``: the same as the ``lstmconvert`` command."""

from .cli import entry_point

entry_point()
