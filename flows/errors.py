"""The one error path of every command: a stage raises :class:`StageError`, ``flows/cli.py`` reports it once."""
from __future__ import annotations


class StageError(Exception):
    """A stage's refusal, printed as ``eulernet <command>: <message>`` on stderr. ``code`` is the exit status:
    2, bad configuration or input and nothing written; 1, the stage ran and its result is refused (failed gates,
    an interrupted run). ``command`` overrides the name printed (``benchmark realworld``)."""

    def __init__(self, message: object, code: int = 2, command: str | None = None):
        super().__init__(str(message))
        self.code = int(code)
        self.command = command
