"""Attribute probe: can a linear read-out of the residual stream still name a target's attributes?

Why: behaviour can be muted while the representation still encodes the facts (the residual at the
entity's last token linearly encodes attributes; Hernandez et al. 2023, "Linearity of relation decoding").
The attacker fits, on the model under attack, one logistic-regression probe per relation on the other
known entities (activation at the entity's last token -> answer), then reads the targets. The same
probe on entities the model never saw gives the floor (chance, or what the prompt alone reveals).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sae_unlearn.attacks.relearn import relation
from sae_unlearn.entities.types import Entity
from sae_unlearn.metrics.recall import normalise


@dataclass
class FactRows:
    """One row per fact (all phrasings): the activation at the entity's last token, its relation, its answer."""

    x: np.ndarray
    relations: list[str]
    labels: list[str]

    @classmethod
    def of(cls, entities: list[Entity], acts: torch.Tensor) -> "FactRows":
        """``acts`` in the order of ``metrics.alignment.entity_activations`` (entity by entity, fact by fact)."""
        rels = [relation(e, f) for e in entities for f in e.facts]
        labels = [normalise(f.answer) for e in entities for f in e.facts]
        return cls(acts.float().cpu().numpy(), rels, labels)


def attribute_probe_accuracy(
    train: FactRows, tests: dict[str, FactRows], min_rows: int = 8, seed: int = 0
) -> dict[str, float]:
    """Accuracy of per-relation probes on each test set (NaN where no relation can be probed), and
    under ``<name>_majority`` the accuracy of always guessing each relation's most frequent training
    answer on the same rows: a probe is only evidence of knowledge where it beats that guess (a
    relation dominated by one answer, e.g. continent "Europe", gives high accuracy with no knowledge).

    A relation is probed when, counting only answers seen at least twice, its training rows hold at
    least ``min_rows`` rows and two distinct answers; a test row whose answer is not among them counts
    as wrong (for every test set alike)."""
    majority = {name: 0 for name in tests}
    correct = {name: 0 for name in tests}
    total = {name: 0 for name in tests}
    rel_train, all_labels = np.array(train.relations), np.array(train.labels)
    for rel in sorted(set(train.relations)):
        rows = np.flatnonzero(rel_train == rel)
        # an answer seen once cannot be learned as a class (e.g. every capital is unique)
        values, counts = np.unique(all_labels[rows], return_counts=True)
        rows = rows[np.isin(all_labels[rows], values[counts >= 2])]
        labels = all_labels[rows]
        if len(rows) < min_rows or len(set(labels)) < 2:
            continue
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
        probe.fit(train.x[rows], labels)
        values, counts = np.unique(labels, return_counts=True)
        most_frequent = values[np.argmax(counts)]
        for name, test in tests.items():
            idx = [i for i, r in enumerate(test.relations) if r == rel]
            if not idx:
                continue
            pred = probe.predict(test.x[idx])
            correct[name] += int(sum(p == test.labels[i] for p, i in zip(pred, idx)))
            majority[name] += sum(test.labels[i] == most_frequent for i in idx)
            total[name] += len(idx)
    share = lambda hits, name: hits[name] / total[name] if total[name] else float("nan")  # noqa: E731
    return {name: share(correct, name) for name in tests} | {
        f"{name}_majority": share(majority, name) for name in tests
    }
