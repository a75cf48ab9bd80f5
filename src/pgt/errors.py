"""The one exception type users see: its message is a complete, one-line explanation."""


class PgtError(Exception):
    """A user-facing error (bad input, missing file, inconsistent artefacts).

    The command line prints `error: <message>` and exits with status 2; nothing
    half-written is left behind by the operation that raised it.
    """
