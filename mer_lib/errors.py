"""One exception type for bad input, and the check every numeric setting goes through.

The CLI prints a MerError's message as a one-line error. `check_number` is where settings of any
command (`mer train`'s model sizes, `mer extract`'s windows, worker counts) are checked, so every bad
value gets the same kind of message, naming the setting and its `mer` flag, before any work starts.
"""
from __future__ import annotations

import math
import numbers


class MerError(Exception):
    """A user-facing error (bad path, unknown file name, unusable media, missing weights).

    The message must say what is wrong and, where possible, what to do about it. The `mer`
    command prints it on one line and exits with status 2; library callers can catch it.
    """


class EmptyInput(MerError):
    """Readable input with nothing to analyse: a silent recording, no face in any frame, no window.

    `mer extract` records it as the clip's failure; `mer predict` treats the modality as absent, as it
    does a missing stream.
    """


def flag(name: str) -> str:
    """The `mer` flag of setting `name`: d_model -> --d-model."""
    return "--" + name.replace("_", "-")


def check_number(name: str, value, integer: bool = False, low: float | None = None, high: float | None = None,
                 above: float | None = None) -> None:
    """MerError naming setting `name` and its flag unless `value` is a finite number (an integer when
    `integer`) with `low` <= value <= `high` and value > `above`, where those are given."""
    kind = numbers.Integral if integer else numbers.Real
    fits = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    fits = fits and (low is None or value >= low) and (high is None or value <= high)
    if not (fits and (above is None or value > above)):
        bounds = [f"{sign} {bound:g}" for sign, bound in ((">=", low), (">", above), ("<=", high)) if bound is not None]
        kind = "an integer" if integer else "a finite number"
        raise MerError(f"{name} ({flag(name)}) must be {' '.join([kind, ' and '.join(bounds)]).strip()}, got {value!r}")
