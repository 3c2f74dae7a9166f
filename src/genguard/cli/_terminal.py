"""What a capture or a provider sent, made safe to show on a terminal: it is data, never a command to it.

A body can carry escape sequences that a terminal obeys: colours and cursor moves (CSI), a window title or
a hyperlink whose text hides its target (OSC), device control strings (DCS), APC and PM strings, single
character escapes, C1 controls and bare C0 controls such as a carriage return that overwrites a line.
:func:`printable` removes every one of them from readable text; :func:`escape_json_controls` writes the
ones JSON leaves raw as ``\\u`` escapes, so a JSON line stays the same data.
"""

from __future__ import annotations

import re

__all__ = ["escape_json_controls", "printable"]

_CONTROL = re.compile(
    r"""
      (?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]            # CSI: colours, cursor moves, erasing
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)  # OSC, DCS, SOS, PM, APC
    | \x1b[\x20-\x2f]*[\x30-\x7e]?                                 # a single-character escape, or a lone ESC
    | [\x00-\x08\x0b-\x1f\x7f-\x9f]                                # any other C0 or C1 control, and DEL
    """,
    re.VERBOSE,
)
# orjson escapes C0 controls; these it writes as they are (U+007F-U+009F, as UTF-8 bytes).
_RAW_IN_JSON = re.compile(rb"\x7f|\xc2[\x80-\x9f]")


def printable(text: str) -> str:
    r"""``text`` without any terminal control sequence or control character; tab and newline are kept.

    >>> printable("\x1b]0;pwned\x07ok \x1b[31mred\x1b[0m\r\n\x1b]8;;https://evil\x1b\\link\x1b]8;;\x1b\\")
    'ok red\nlink'
    """
    return _CONTROL.sub("", text) if not text.isprintable() else text


def escape_json_controls(line: bytes) -> bytes:
    r"""A JSON text (UTF-8) with DEL and the C1 controls written as ``\u`` escapes: the same data, and
    nothing a terminal acts on.

    >>> escape_json_controls('{"a": "x\x9b31m"}'.encode())
    b'{"a": "x\\u009b31m"}'
    """
    if _RAW_IN_JSON.search(line) is None:
        return line
    return _RAW_IN_JSON.sub(lambda m: b"\\u%04x" % ord(m.group().decode("utf-8")), line)
