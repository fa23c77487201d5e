"""The base class of errors a user can fix from the message alone.

Bad configuration, missing or corrupt data, unreachable mirrors, an unprepared environment,
a diverged or interrupted training run: workflow scripts (n2v_repro.logs.script_log) show
such an error's message, not a traceback; the log file keeps the full trace. Every other
exception is a bug and is shown with its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Mixed into the project's user-facing exceptions: DownloadError(UserError, RuntimeError)."""
