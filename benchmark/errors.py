"""The root of the suite's user-facing errors.

Every error a user can cause or fix (a missing model, a mismatched pair, a bad split size, an invalid
result file) derives from `BenchmarkError`; its message is one line that says what failed and what to
do. `etbench` catches this one class and prints the message without a traceback; anything else is a bug.
"""


class BenchmarkError(Exception):
    """A user-facing error: one line, what failed and what to do."""


class CliError(BenchmarkError):
    """A wrong combination of command-line arguments."""
