"""Long phases without a bar of their own say when they start and how long they took, and stay silent when asked."""

from __future__ import annotations

import re

import pytest

from sae_unlearn.progress import phase


def test_phase_announces_start_and_time_and_is_silent_when_disabled_or_failing(capsys):
    with phase("evaluating the original model"):
        pass
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "evaluating the original model ..."
    assert re.fullmatch(r"evaluating the original model: \d+ s", err[1])
    with phase("quiet", enabled=False):
        pass
    assert capsys.readouterr().err == ""
    with pytest.raises(RuntimeError), phase("failing"):
        raise RuntimeError("boom")
    assert capsys.readouterr().err.splitlines() == ["failing ..."]  # no time for a phase that did not finish
