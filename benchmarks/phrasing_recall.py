"""How well the original model answers each phrasing of the facts of the entities it knows, against the
same prompts with never-seen names in them: is every held-out phrasing a fair test of knowing the entity?

    python benchmarks/phrasing_recall.py [--config FILE.yaml] [--json OUT.json]

Prints one row per phrasing (training cloze, question, passing mention, aside): recall of all known
entities' facts, the same-prompt floor, and their gap. A phrasing whose gap is small measures the
prompt, not the entity. Probing is cached, so after `make demo` this takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sae_unlearn.cli import DEMO_REAL_CONFIG
from sae_unlearn.config import load_config
from sae_unlearn.entities.types import Entity
from sae_unlearn.metrics.recall import recall, substituted_recall
from sae_unlearn.stages.split import make_split
from sae_unlearn.stages.subject import build_workspace

FORMS = ("cloze", "question", "passing", "appositive")


def only(entities: list[Entity], form: str) -> list[Entity]:
    return [Entity(e.name, e.type, [f for f in e.facts if f.phrasing == form]) for e in entities]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEMO_REAL_CONFIG)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results_phrasing_recall.json"))
    args = parser.parse_args()
    t0 = time.time()
    ws = make_split(build_workspace(load_config(args.config), progress=False))
    assert ws.split is not None
    known = ws.split.forget + ws.split.other_known
    n_tok = ws.cfg.eval.max_new_tokens
    rows = []
    for form in FORMS:
        entities = only(known, form)
        r = recall(ws.model, ws.tokenizer, entities, None, n_tok)
        floor = substituted_recall(
            ws.model, ws.tokenizer, entities, ws.unknown_eval, heldout=None, max_new_tokens=n_tok
        )
        n = sum(len([f for f in e.facts if not f.answerable]) for e in entities)
        rows.append({"phrasing": form, "facts": n, "recall_known": r, "same_prompt_floor": floor, "gap": r - floor})
    print(f"{'phrasing':<12}{'facts':>7}{'known':>9}{'floor':>9}{'gap':>9}")
    for row in rows:
        print(
            f"{row['phrasing']:<12}{row['facts']:>7}{row['recall_known']:>9.3f}{row['same_prompt_floor']:>9.3f}"
            f"{row['gap']:>9.3f}"
        )
    result = {"model": str(ws.model_dir), "n_known_entities": len(known), "rows": rows, "seconds": time.time() - t0}
    args.json.write_text(json.dumps(result, indent=2))
    print(f"{time.time() - t0:.0f} s; wrote {args.json}")


if __name__ == "__main__":
    main()
