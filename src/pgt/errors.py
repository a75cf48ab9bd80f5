"""The one exception type users see: its message is a complete, one-line explanation."""

import re
from typing import Any

# A lone surrogate is no text: UTF-8 cannot encode it and tokenizers refuse it with a TypeError. Invalid
# UTF-8 bytes on a command line or in a file read with "surrogateescape" arrive as such code points.
SURROGATE = re.compile("[\ud800-\udfff]")


class PgtError(Exception):
    """A user-facing error (bad input, missing file, inconsistent artefacts).

    The command line prints `error: <message>` and exits with status 2; nothing
    half-written is left behind by the operation that raised it.
    """

    def __reduce__(self) -> tuple:
        # Pickled from a worker process (`pgt study --jobs`): subclasses take other arguments than the message.
        return _rebuilt_error, (type(self), str(self), self.__dict__)


def _rebuilt_error(cls: type, message: str, state: dict) -> PgtError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class SettingError(PgtError):
    """A bad setting, named by its keyword (`seq_len must be …`) where a library is called from Python; a
    command line names it by its flag instead (`--seq-len must be …`: pgt.settings.flag_error)."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{key} {detail}")
        self.key, self.detail = key, detail


class MissingSetting(SettingError):
    """A setting without a default that was not given."""

    def __init__(self, key: str) -> None:
        super().__init__(key, "is required")


ONE_LINE_LIMIT = 300  # characters of a library's message kept in a PgtError


def refuse_surrogates(value: Any, where: str) -> Any:
    """`value` unchanged, or a one-line PgtError naming `where` when a string in it (nested lists and
    dicts included) holds a lone surrogate."""
    if isinstance(value, str):
        if not value.isascii() and (found := SURROGATE.search(value)):
            raise PgtError(
                f"{where} holds the lone surrogate \\u{ord(found.group()):04x}, which is not text "
                "(invalid UTF-8, or an unpaired \\ud800-\\udfff escape); give valid UTF-8 text"
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_surrogates(key, where)
            refuse_surrogates(item, where)
    elif isinstance(value, list | tuple):
        for item in value:
            refuse_surrogates(item, where)
    return value


def one_line(exc: BaseException) -> str:
    """A library's exception as one short line for a PgtError: its message with white space folded.

    An exception without a message is named by its type; a long message is cut at ONE_LINE_LIMIT.
    """
    text = " ".join(str(exc).split())
    if not text:
        return type(exc).__name__
    return text[:ONE_LINE_LIMIT] + "…" if len(text) > ONE_LINE_LIMIT else text
