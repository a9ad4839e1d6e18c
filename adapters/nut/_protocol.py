"""Lines of the NUT network protocol (RFC 9271 section 4): words, quoting, and the error codes.

A line is words separated by spaces and ends with LF. A word holding spaces, a double quote or a backslash is
sent in double quotes, with ``"`` and ``\\`` escaped by a backslash; upsd answers values always quoted
(``VAR ups ups.status "OL CHRG"``). Client and simulator both use these functions, so they agree on quoting.
"""

from __future__ import annotations

import re

__all__ = ["ERROR_CODES", "join", "quote", "split"]

# RFC 9271 section 4.2.9 (ERR). upsd may add more in later versions: an unknown code is passed on as it is.
ERROR_CODES = frozenset({
    "ACCESS-DENIED", "UNKNOWN-UPS", "VAR-NOT-SUPPORTED", "CMD-NOT-SUPPORTED", "INVALID-ARGUMENT",
    "INSTCMD-FAILED", "SET-FAILED", "READONLY", "TOO-LONG", "FEATURE-NOT-SUPPORTED", "FEATURE-NOT-CONFIGURED",
    "ALREADY-SSL-MODE", "DRIVER-NOT-CONNECTED", "DATA-STALE", "ALREADY-LOGGED-IN", "INVALID-PASSWORD",
    "ALREADY-SET-PASSWORD", "INVALID-USERNAME", "ALREADY-SET-USERNAME", "USERNAME-REQUIRED",
    "PASSWORD-REQUIRED", "UNKNOWN-COMMAND", "INVALID-VALUE",
})  # fmt: skip

_PLAIN = re.compile(r"[^\s\"\\]+")


def quote(word: str, *, always: bool = False) -> str:
    """``word`` as one protocol word: bare when it can be (unless ``always``), else quoted and escaped.

    Raises ValueError for a line break or NUL, which no quoting can carry.
    """
    if any(c in word for c in "\r\n\0"):
        raise ValueError(f"a NUT protocol word cannot hold a line break or NUL: {word!r}")
    if not always and _PLAIN.fullmatch(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def join(*words: str, quote_last: bool = False) -> bytes:
    """One request or response line, LF-terminated; ``quote_last`` quotes the last word even if plain (upsd
    always quotes values and descriptions)."""
    last = len(words) - 1
    return (" ".join(quote(w, always=quote_last and i == last) for i, w in enumerate(words)) + "\n").encode()


def split(line: str) -> list[str]:
    """The words of one line, quotes removed and escapes resolved.

    Tolerant like upsd's own parser: an unterminated quote ends at the end of the line, and a backslash before
    any character keeps that character.
    """
    words: list[str] = []
    current: list[str] = []
    in_word = in_quotes = escaped = False
    for c in line.rstrip("\r\n"):
        if escaped:
            current.append(c)
            escaped = False
        elif c == "\\":
            escaped = in_word = True
        elif c == '"':
            in_quotes = not in_quotes
            in_word = True
        elif c.isspace() and not in_quotes:
            if in_word:
                words.append("".join(current))
                current.clear()
                in_word = False
        else:
            current.append(c)
            in_word = True
    if in_word:
        words.append("".join(current))
    return words
