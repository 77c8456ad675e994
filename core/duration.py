"""One strict parser for durations an administrator writes in the catalogue (``7d``, ``12h``, ``90s``).

A duration is a whole number and one unit: ``s`` (seconds), ``m`` (minutes), ``h`` (hours) or ``d``
(days), with no sign, space, fraction or second unit (``1d12h`` is written ``36h``). ASCII digits
only, at most :data:`MAX_SECONDS` in all; ``0s`` is refused (a zero retention would delete a job
the moment it ends: leave the setting out to keep jobs instead).
"""

from __future__ import annotations

import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: The longest duration accepted: ten years of 365 days.
MAX_SECONDS = 3650 * 86400
# ASCII digits only ([0-9], not \d), applied with fullmatch; 9 digits bound the text, MAX_SECONDS the value.
_DURATION = re.compile(r"(?P<number>[0-9]{1,9})(?P<unit>[smhd])")
GRAMMAR = "a whole number and one unit s, m, h or d, such as 7d, 12h, 30m or 90s"


class DurationError(ValueError):
    """Not a duration; the message says what is allowed."""


def parse_duration(value: object) -> int:
    """Parse a duration into whole seconds.

    Raises:
        DurationError: Not a string, outside the grammar (``"7 d"``, ``"1.5h"``, ``"-1d"``, ``"7"``,
            ``"1d12h"``), zero, or longer than :data:`MAX_SECONDS`.
    """
    if not isinstance(value, str):
        raise DurationError(f"{value!r} is not a duration; {GRAMMAR}")
    match = _DURATION.fullmatch(value)
    if match is None:
        raise DurationError(f"{value[:40]!r} is not a duration; {GRAMMAR}")
    seconds = int(match["number"]) * UNITS[match["unit"]]
    if not 0 < seconds <= MAX_SECONDS:
        raise DurationError(f"{value!r} is not allowed; a duration > 0 and at most {MAX_SECONDS // 86400}d")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest exact text for ``seconds`` (``604800`` → ``7d``, ``90`` → ``90s``)."""
    for unit in ("d", "h", "m"):
        if seconds % UNITS[unit] == 0 and seconds >= UNITS[unit]:
            return f"{seconds // UNITS[unit]}{unit}"
    return f"{seconds}s"
