"""Two kinds of failure a user can cause, mapped to exit codes by the CLI.

UsageError (exit 2): the request itself is wrong (unknown name, value out of range, missing path).
``params``: the options it is about, named by
their Python keyword (``sparsity``); the command line shows them as flags (``--sparsity``).
RunError (exit 1): a valid request failed while running (corrupt file, NaN loss, parity failure).
Both carry a one-line message; the CLI prints it without a traceback.
"""


class FilterpruneError(Exception):
    exit_code = 1


class UsageError(FilterpruneError):
    exit_code = 2

    def __init__(self, message: str = "", params: tuple[str, ...] = ()):
        super().__init__(message)
        self.params = tuple(params)


class RunError(FilterpruneError):
    exit_code = 1
