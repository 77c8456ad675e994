"""One strict parser for Kubernetes quantities (``500m``, ``2``, ``8Gi``, ``1e3``) and plain numbers.

Every size a user or an administrator writes (a job's CPU and memory, the catalogue's profile
and job limits) goes through here, so the same text is accepted or refused everywhere. The
grammar is the API server's own, from ``k8s.io/apimachinery/pkg/api/resource/quantity.go``::

    <quantity>        ::= <signedNumber><suffix>
    <number>          ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
    <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI>
    <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei
    <decimalSI>       ::= m | "" | k | M | G | T | P | E
    <decimalExponent> ::= "e" <signedNumber> | "E" <signedNumber>

minus what a resource request can never be: a sign (no negative sizes), and text longer than
:data:`MAX_TEXT`. Exponents are bounded (:data:`MAX_EXPONENT`) so that ``1e999999999`` is
refused instead of being expanded. Python's ``float()`` is never used on text: it accepts
``nan``, ``inf``, ``1_000`` and surrounding whitespace, none of which Kubernetes accepts. Values
are exact :class:`~fractions.Fraction` s, so ``0.1`` CPU is exactly 100 millicores.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

#: Longest quantity text accepted (the API server's own limit is larger; no real size needs more).
MAX_TEXT = 32
#: Largest decimal exponent accepted in ``<n>e<exp>`` (10^18 bytes is an exabyte).
MAX_EXPONENT = 18

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"m": Fraction(1, 1000), "": Fraction(1), "k": Fraction(10**3), "M": Fraction(10**6),
            "G": Fraction(10**9), "T": Fraction(10**12), "P": Fraction(10**15), "E": Fraction(10**18)}
# ASCII digits only ([0-9], not \d, which also matches other scripts' digits); applied with fullmatch.
_QUANTITY = re.compile(
    r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<binary>Ki|Mi|Gi|Ti|Pi|Ei)|[eE](?P<exponent>[+-]?[0-9]+)|(?P<decimal>[mkMGTPE]?))"
)
GRAMMAR = "a Kubernetes quantity such as 500m, 2, 1.5, 512Mi, 8Gi or 1e9 (no sign, no spaces)"


class QuantityError(ValueError):
    """Not a quantity; the message says what is allowed."""


def parse_quantity(value: object) -> Fraction:
    """Parse a quantity written as text, exactly.

    Args:
        value: The text, e.g. ``"8Gi"``.

    Returns:
        The value in base units (cores, bytes).

    Raises:
        QuantityError: Not a string, too long, or outside the grammar (``"nan"``, ``"2Gi\\n"``,
            ``" 2"``, ``"-1"``, ``"1e99"``).
    """
    if not isinstance(value, str):
        raise QuantityError(f"{value!r} is not allowed; {GRAMMAR}")
    if len(value) > MAX_TEXT:
        raise QuantityError(f"{value[:MAX_TEXT]!r}... is longer than {MAX_TEXT} characters; {GRAMMAR}")
    match = _QUANTITY.fullmatch(value)
    if match is None:
        raise QuantityError(f"{value!r} is not allowed; {GRAMMAR}")
    number = Fraction(match["number"] if not match["number"].endswith(".") else match["number"][:-1])
    if match["binary"]:
        return number * _BINARY[match["binary"]]
    if match["exponent"] is not None:
        exponent = int(match["exponent"])
        if abs(exponent) > MAX_EXPONENT:
            raise QuantityError(f"{value!r}: the exponent is outside -{MAX_EXPONENT}..{MAX_EXPONENT}; {GRAMMAR}")
        return number * Fraction(10) ** exponent
    return number * _DECIMAL[match["decimal"] or ""]


def parse_number(value: object) -> Fraction:
    """A size given as a JSON/YAML number or as quantity text, exactly.

    Numbers must be finite (``NaN`` and ``Infinity`` are valid JSON for Python's parser, and
    ``.nan``/``.inf`` valid YAML). A float is read through its shortest decimal form, so ``0.1``
    is exactly one tenth.

    Raises:
        QuantityError: A bool, a non-finite number, or text outside the grammar.
    """
    if isinstance(value, bool):
        raise QuantityError(f"{value!r} is not allowed; a number or {GRAMMAR}")
    if isinstance(value, int):
        if value < 0:
            raise QuantityError(f"{value!r} is not allowed; sizes are not negative")
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            raise QuantityError(f"{value!r} is not allowed; a finite number >= 0")
        return Fraction(repr(value))
    return parse_quantity(value)


def millicores(value: object) -> int:
    """CPU as integer millicores, rounded up the way the API server rounds (``0.0001`` → 1).

    Raises:
        QuantityError: See :func:`parse_number`.
    """
    return math.ceil(parse_number(value) * 1000)


def bytes_of(value: object) -> int:
    """Memory as integer bytes, rounded up (``1.5`` → 2).

    Raises:
        QuantityError: See :func:`parse_number`.
    """
    return math.ceil(parse_number(value))


def format_millicores(millis: int) -> str:
    """``2000`` → ``"2"``, ``1500`` → ``"1500m"`` (the API server's canonical forms)."""
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def format_bytes(count: int) -> str:
    """``2147483648`` → ``"2Gi"``; the largest binary suffix that divides exactly, else plain bytes."""
    for suffix, factor in sorted(_BINARY.items(), key=lambda kv: -kv[1]):
        if count and count % factor == 0:
            return f"{count // factor}{suffix}"
    return str(count)
