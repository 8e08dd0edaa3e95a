"""The metric registry: every number a run writes, with how to read it, declared next to the code that computes it.

Evaluation, the Markdown/HTML report, ``compare.md`` and the CLI's table all read this, so a metric is added in
one place and no list of keys can drift from another (issue 22). A metric with a ``compute`` function is also
run by evaluation on every model state, which is how a new metric joins by adding one module to
``evaluation/`` (see ``evaluation/membership.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Literal

Scope = Literal["state", "floor", "method"]
# "min"/"max": lower/higher is better; a float: closest to it wins (probe AUC: 0.5); "floor": closest to the
# metric's first floor (forgetting is answering like for a stranger, not never answering); None: not ranked
Better = Literal["min", "max", "floor"] | float | None
FORM = "{form}"  # in a key: one metric per held-out phrasing of the run (question, passing, ...)


@dataclass(frozen=True)
class Metric:
    """One reported number.

    ``scope``: "state" is measured on each model state and written ``<key>_before`` and ``<key>_after``;
    "floor" is measured on the original model only (what an unknown entity scores) and written bare;
    "method" belongs to one method's run (steps, seconds, the relearning attack) and is written bare.
    """

    key: str
    label: str
    scope: Scope = "state"
    better: Better = None
    floors: tuple[str, ...] = ()  # floor keys this is read against, shown right after it; the first is like-for-like
    section: Literal["headline", "attacks", "hidden"] = "headline"
    attack: str = ""  # in the "attacks" section: the attack this row belongs to (its report panel, ``ATTACKS``)
    rows: tuple[str, ...] = ("before", "after")  # which values of a state metric the report shows
    compare: bool = False  # a column of compare.md
    summary: bool = False  # a row of the CLI's results table
    # run on every model state by evaluation: (evaluation context, model, is_original) -> {key: value} (bare keys)
    compute: Callable[[Any, Any, bool], dict[str, float]] | None = None

    def written_keys(self) -> list[str]:
        """The keys this metric writes into a method's record (``{form}`` unexpanded)."""
        if self.scope == "state":
            return [f"{self.key}_{row}" for row in self.rows]
        return [self.key]

    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.escape(self.key).replace(re.escape(FORM), r"(?P<form>[a-z_]+?)") + "$")


REGISTRY: dict[str, Metric] = {}
# each attack's name -> the question its report panel answers, in reading order (``register_attack``)
ATTACKS: dict[str, str] = {}
# the attacks a run may leave to `compare` and `attack` (``attack.extended: false``)
EXTENDED_ATTACKS: set[str] = set()


def register(*metrics: Metric) -> None:
    for metric in metrics:
        if metric.key in REGISTRY:
            raise ValueError(f"metric {metric.key!r} is registered twice")
        REGISTRY[metric.key] = metric


def register_attack(name: str, question: str, extended: bool = False) -> None:
    """An attack of the report: one panel (its rows and a plot) under "Attacks", with the question it asks;
    ``extended``: one of those a run's ``attack.extended: false`` leaves out."""
    if name in ATTACKS:
        raise ValueError(f"attack {name!r} is registered twice")
    ATTACKS[name] = question
    if extended:
        EXTENDED_ATTACKS.add(name)


def lookup(bare_key: str) -> tuple[Metric, str | None] | None:
    """The metric a bare key (no ``_before``/``_after``) belongs to, and its phrasing for ``{form}`` keys."""
    if bare_key in REGISTRY:
        return REGISTRY[bare_key], None
    for metric in REGISTRY.values():
        if FORM in metric.key and (match := metric.pattern().match(bare_key)):
            return metric, match.group("form")
    return None


def describe(written_key: str) -> tuple[Metric, str | None] | None:
    """The metric a key as written in ``metrics.json`` belongs to (suffix and ``{form}`` resolved)."""
    for suffix in ("_before", "_after"):
        # a floor computed on every state also gets the suffixes (unknown_classified_unknown_after): kept as written
        if written_key.endswith(suffix) and (found := lookup(written_key[: -len(suffix)])):
            if found[0].scope != "method":
                return found
    return lookup(written_key)


def is_floor(bare_key: str) -> bool:
    found = lookup(bare_key)
    return found is not None and found[0].scope == "floor"


def forms_in(record: dict, metric: Metric) -> list[str | None]:
    """The phrasings a ``{form}`` metric has in one method's record (sorted); [None] for a plain metric."""
    if FORM not in metric.key:
        return [None]
    found = set()
    for key in record:
        described = describe(key)
        if described is not None and described[0] is metric:
            found.add(described[1])
    forms: list[str | None] = []
    forms.extend(sorted(f for f in found if f is not None))
    return forms


def expand(template: str, form: str | None) -> str:
    return template.replace(FORM, form) if form is not None else template


def computed(attacks: bool = True, extended: bool = True) -> list[Callable[[Any, Any, bool], dict[str, float]]]:
    """The compute functions of the metrics that bring their own (registration order; a function that
    computes several metrics at once, declared on each, runs once); without ``attacks`` (``attack.enabled:
    false``), none of an attack's; without ``extended``, none of an extended attack's. Read here, once, so that no
    attack module guards itself (and none can forget to)."""
    return list(
        dict.fromkeys(
            m.compute
            for m in REGISTRY.values()
            if m.compute is not None
            and (attacks or m.attack is None)
            and (extended or m.attack not in EXTENDED_ATTACKS)
        )
    )


def section_rows(
    records: list[dict],
    section: str,
    form_labels: dict[str, str] | None = None,
    only: Callable[[Metric], bool] | None = None,
) -> list[tuple[str, str]]:
    """(written key, label) of a report section in registry order, each metric followed by its floors, for the
    keys present in any of ``records`` (one per method). A metric that is another's floor is shown only there."""
    present = set().union(*records) if records else set()
    chosen = [m for m in REGISTRY.values() if m.section == section and (only is None or only(m))]
    as_floor = {f for m in chosen for f in m.floors}
    labels = form_labels or {}
    rows: list[tuple[str, str]] = []
    for metric in chosen:
        if metric.key in as_floor:
            continue
        for form in forms_in({k: None for k in present}, metric):
            label = expand(metric.label, labels.get(form, form) if form else None)
            keys = metric.written_keys()
            rows += [
                (expand(k, form), f"{label}, {k.rsplit('_', 1)[1]}" if metric.scope == "state" else label) for k in keys
            ]
            for floor in metric.floors:
                found = lookup(expand(floor, form))
                if found is not None:
                    rows.append((expand(floor, form), expand(found[0].label, labels.get(form, form) if form else None)))
    return [(k, label) for k, label in rows if k in present]
