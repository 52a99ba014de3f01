"""Exception type and message out of a formatted Python traceback.

Job systems store failures as the text of ``traceback.format_exception``; the
failed-jobs table wants the exception's type and message on their own.
"""

from __future__ import annotations

import re
import zlib

TEXT_LIMIT = 16 * 1024 * 1024  # bytes of traceback text inflated at most: the rest is skipped, and said
KEEP = 64 * 1024  # bytes of it kept at each end: a traceback's head, and its tail that names the exception

# "  File "x.py", line 3, in f" and the indented source / caret lines under it.
_FRAME_LINE = re.compile(r"^(  File \"|    )")
_TYPE = re.compile(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$", re.DOTALL)


def inflate_text(data: bytes, limit: int = TEXT_LIMIT, keep: int = KEEP) -> str:
    """zlib-compressed text, inflated a piece at a time: a bomb costs bounded memory and time.

    Text over ``2 * keep`` bytes comes back as its head and its tail with the cut
    said between them; past ``limit`` bytes inflating stops, and the text says
    where ("… truncated at 16 MB …"). Raises zlib.error for data that is not zlib.
    """
    inflater = zlib.decompressobj()
    head = bytearray()
    tail = b""
    seen = 0
    pending = data
    while pending and seen < limit:
        piece = inflater.decompress(pending, min(keep, limit - seen))
        pending = inflater.unconsumed_tail
        seen += len(piece)
        if len(head) < keep:
            room = keep - len(head)
            head += piece[:room]
            piece = piece[room:]
        if piece:
            tail = (tail + piece)[-keep:]
        if inflater.eof:
            break
    truncated = seen >= limit and not inflater.eof
    cut = seen - len(head) - len(tail)
    text = head.decode("utf-8", "replace")
    if cut > 0:
        text += f"\n… {cut:,} bytes cut …\n"
    text += tail.decode("utf-8", "replace")
    if truncated:
        text += f"\n… truncated at {limit // (1024 * 1024)} MB: the rest was not read …"
    return text


def split_exception(text: str | None) -> tuple[str | None, str | None]:
    """(type, message) of the last exception in ``text``.

    Text that is not a traceback ("Work-horse terminated unexpectedly") comes
    back as (None, text). Multi-line messages are kept whole. A long text is
    read at its two ends only (``2 * KEEP`` characters each): a traceback's
    header and first frames, and the exception at its end.
    """
    if not text or not text.strip():
        return None, None
    if len(text) > 4 * KEEP:
        text = f"{text[: 2 * KEEP]}\n… {len(text) - 4 * KEEP:,} characters cut …\n{text[-2 * KEEP:]}"
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
