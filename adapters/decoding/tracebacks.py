"""Exception type and message out of a formatted Python traceback.

Job systems store failures as the text of ``traceback.format_exception``; the
failed-jobs table wants the exception's type and message on their own.
"""

from __future__ import annotations

import re

# "  File "x.py", line 3, in f" and the indented source / caret lines under it.
_FRAME_LINE = re.compile(r"^(  File \"|    )")
_TYPE = re.compile(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$", re.DOTALL)


def split_exception(text: str | None) -> tuple[str | None, str | None]:
    """(type, message) of the last exception in ``text``.

    Text that is not a traceback ("Work-horse terminated unexpectedly") comes
    back as (None, text). Multi-line messages are kept whole.
    """
    if not text or not text.strip():
        return None, None
    lines = text.rstrip("\n").splitlines()
    last_header = max((i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")), default=None)
    if last_header is None:
        return None, text.strip()
    tail = lines[last_header + 1 :]
    # Skip the frames; what follows the last frame line is the exception.
    start = 0
    while start < len(tail) and (_FRAME_LINE.match(tail[start]) or not tail[start].strip()):
        start += 1
    exception = "\n".join(tail[start:]).strip()
    if not exception:
        return None, None
    match = _TYPE.match(exception)
    if match is None:
        return None, exception
    error_type, message = match.group(1), match.group(2)
    return error_type, (message.strip() if message else "")


def clip(text: str | None, limit: int) -> str | None:
    """``text`` cut to about ``limit`` characters, keeping its head and its tail
    (a traceback's tail names the exception), with the cut said in the middle."""
    if text is None or len(text) <= limit:
        return text
    head = limit // 4
    tail = limit - head
    return f"{text[:head]}\n… {len(text) - head - tail:,} characters cut …\n{text[-tail:]}"
