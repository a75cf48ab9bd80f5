"""The one exception type users see: its message is a complete, one-line explanation."""


class PgtError(Exception):
    """A user-facing error (bad input, missing file, inconsistent artefacts).

    The command line prints `error: <message>` and exits with status 2; nothing
    half-written is left behind by the operation that raised it.
    """


ONE_LINE_LIMIT = 300  # characters of a library's message kept in a PgtError


def one_line(exc: BaseException) -> str:
    """A library's exception as one short line for a PgtError: its message with white space folded.

    An exception without a message is named by its type; a long message is cut at ONE_LINE_LIMIT.
    """
    text = " ".join(str(exc).split())
    if not text:
        return type(exc).__name__
    return text[:ONE_LINE_LIMIT] + "…" if len(text) > ONE_LINE_LIMIT else text
