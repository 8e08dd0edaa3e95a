"""A line when a long phase without a progress bar starts, and its time when it ends.

Why: on a real model, evaluating one state (recall on every phrasing, probes, membership scores, quantised recall)
and the relearning attack take minutes with no bar of their own (Gemma-3-270M on 2 cores: 3 minutes for the
original model's evaluation, more with the attacks); a silent terminal looks hung. tqdm's ``write`` keeps the line
clear of any bar that is running.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm


@contextmanager
def phase(description: str, enabled: bool = True) -> Iterator[None]:
    """``description ...`` on stderr, then ``description: N s`` when the block ends (not when it raises)."""
    if not enabled:
        yield
        return
    tqdm.write(f"{description} ...", file=sys.stderr)
    t0 = time.time()
    yield
    tqdm.write(f"{description}: {time.time() - t0:.0f} s", file=sys.stderr)


def note(line: str, enabled: bool = True) -> None:
    """One line on stderr, clear of any running bar: a phase that was skipped, and why."""
    if enabled:
        tqdm.write(line, file=sys.stderr)
