"""One exception type for bad input: the CLI prints its message as a one-line error."""


class MerError(Exception):
    """A user-facing error (bad path, unknown file name, unusable media, missing weights).

    The message must say what is wrong and, where possible, what to do about it. The `mer`
    command prints it on one line and exits with status 2; library callers can catch it.
    """
