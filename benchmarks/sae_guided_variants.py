"""Tuning aid: SAE-guided unlearning with several option sets on one workspace; prints a table, writes JSON.

    python benchmarks/sae_guided_variants.py --smollm2 '[{}, {"w_output": 1.0}, {"w_output": 1.0, "steps": 80}]'
    python benchmarks/sae_guided_variants.py '[{"w_retain": 30}]'          # the synthetic world
    python benchmarks/sae_guided_variants.py --relearn '[{}, {"train_layers": [0, 1, 2, 3]}]'   # + relearning attack
    python benchmarks/sae_guided_variants.py --smollm2 --set sae.b_dec_init=mean --seed 2 '[{"w_kl": 5}]'

The model, SAE, probing and split are built once (the costly part on SmolLM2); each variant then unlearns a
fresh copy and is scored on forget / retain / held-out known recall and the readout attack only (the full
evaluation and attacks are `compare_methods.py`'s job; `--relearn` adds the relearning attack and its floor). The
JSON also keeps each loss term's peak and last value. Retained and held-out
known entities are scored on the run's own sample (`eval.max_scored_entities`), as `sae-unlearn run` scores them;
`--set` changes any config key for every variant (the SAE's settings, say). Option names are
`unlearn.methods.sae_guided` (SAEGuidedConfig) fields; "steps" sets the budget; "lora" / "lora_rank" set `model.*` (a peft
adapter on the trained blocks instead of full weights).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from sae_unlearn.attacks.suite import relearn_floors, relearn_metrics
from sae_unlearn.cli import DEMO_REAL_CONFIG
from sae_unlearn.config import load_config
from sae_unlearn.entities.types import Fact
from sae_unlearn.evaluation.evaluate import perplexity_texts
from sae_unlearn.evaluation.floors import floors_by_phrasing, recall_by_phrasing
from sae_unlearn.evaluation.readout import readout_recall
from sae_unlearn.methods.adapters import merged_adapter
from sae_unlearn.metrics.recall import answer_matches, recall, scored_facts, substituted_recall
from sae_unlearn.metrics.utility import perplexity
from sae_unlearn.models.generation import greedy_continuations
from sae_unlearn.stages.latents import select_latents
from sae_unlearn.stages.sae import get_sae
from sae_unlearn.stages.split import make_split
from sae_unlearn.stages.subject import build_workspace
from sae_unlearn.stages.unlearn import run_method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", help="JSON list of option dicts, e.g. '[{}, {\"w_output\": 1.0}]'")
    parser.add_argument("--smollm2", action="store_true", help="SmolLM2-135M with the demo's config")
    parser.add_argument("--relearn", action="store_true", help="also run the relearning attack (docs/attacks.md)")
    parser.add_argument(
        "--seed", type=int, default=None, help="another draw of targets and split (default: the config's)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config key for every variant, dotted, the value read as YAML (e.g. sae.b_dec_init=mean); repeatable",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench-sae-guided-variants.json"))
    args = parser.parse_args()
    variants = json.loads(args.variants)
    overrides = dict(_key_value(item) for item in args.set) | ({} if args.seed is None else {"seed": args.seed})
    cfg = load_config(DEMO_REAL_CONFIG if args.smollm2 else None, overrides)
    t0 = time.time()
    ws = select_latents(make_split(get_sae(build_workspace(cfg, progress=False), progress=False)))
    floors = relearn_floors(ws.evaluation) if args.relearn else {}
    print(
        f"workspace built in {time.time() - t0:.0f} s"
        + (
            f"; relearning floor {floors['relearn_recall_unknown']:.3f}, "
            f"original {floors['relearn_recall_original']:.3f}"
            if floors
            else ""
        )
    )
    tok, held, n_tok = ws.tokenizer, ws.eval_heldout, cfg.eval.max_new_tokens
    floor = substituted_recall(ws.model, tok, ws.split.forget, ws.unknown_eval, heldout=held, max_new_tokens=n_tok)
    known_before = _heldout_known_continuations(ws, ws.model)
    before = _set_recalls(ws, ws.model, known_before)
    if held:  # each held-out phrasing's own floor: the same prompts with unknown names
        before |= floors_by_phrasing(ws.model, tok, ws.split.forget, ws.unknown_eval, n_tok)
    print(f"same-prompt floor {floor:.3f}; before: {json.dumps(before)}")
    ppl_texts = perplexity_texts(ws.evaluation, ws.split.other_known)
    ppl_before = perplexity(ws.model, tok, ppl_texts)
    print(f"perplexity before {ppl_before:.3f}")
    rows = []
    base_steps, base_lora, base_rank = cfg.unlearn.steps, cfg.model.lora, cfg.model.lora_rank  # ws.cfg is cfg
    for options in variants:
        options = dict(options)
        ws.cfg.unlearn.steps = int(options.pop("steps", base_steps))
        ws.cfg.model.lora = options.pop("lora", base_lora)  # true/false, or the demo's [sae_guided]
        ws.cfg.model.lora_rank = int(options.pop("lora_rank", base_rank))
        model, outcome, seconds = run_method(ws, "sae_guided", progress=False, extra_options=options)
        lora = {"lora": True, "lora_rank": ws.cfg.model.lora_rank} if ws.cfg.model.lora_for("sae_guided") else {}
        row = {
            "options": options | lora,
            "steps": ws.cfg.unlearn.steps,
            "steps_run": outcome.steps_run,
            "unlearn_seconds": round(seconds, 1),
            # the largest value each weighted loss term reached: a term that spikes (and then oscillates down)
            # shows a learning rate or a weight that is too high for it
            "loss_term_peaks": {k: round(max(v), 3) for k, v in outcome.loss_terms.items()},
            # and where each ended: a term far from 0 at the end did not get what it asked for
            "loss_term_last": {k: round(v[-1], 3) for k, v in outcome.loss_terms.items() if v},
        }
        with merged_adapter(model):  # as the pipeline's evaluation runs it (faster, same outputs)
            known_after = _heldout_known_continuations(ws, model)
            row |= _scores(ws, model, known_after, outcome, floors, ppl_texts, ppl_before)
            row["heldout_known_changed"] = _changed_facts(ws, known_before, known_after)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(
        "\n| options | steps | forget | readout | retain | held-out known | perplexity change | relearned | unlearning s |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        readout = "n/a" if r.get("forget_readout") is None else f"{r['forget_readout']:.3f}"
        print(
            f"| `{json.dumps(r['options'])}` | {r['steps_run']} | {r['forget']:.3f} | {readout} | {r['retain']:.3f} | "
            f"{r['heldout_known']:.3f} | {100 * r['perplexity_change']:+.1f} % | {r.get('relearn', float('nan')):.3f} | "
            f"{r['unlearn_seconds']:.0f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "smollm2": args.smollm2,
                # the --set keys (the draw's too), so that variant_tradeoff.py can tell runs with other settings apart
                "set": overrides,
                "perplexity_before": ppl_before,
                "same_prompt_floor": floor,
                "before": before,
                "relearn_floors": {k: v for k, v in floors.items() if "curve" not in k},
                "variants": rows,
            },
            indent=1,
        )
    )


def _key_value(item: str) -> tuple[str, object]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SystemExit(f"--set takes KEY=VALUE (e.g. sae.b_dec_init=mean), not {item!r}")
    return key, yaml.safe_load(value)


def _set_recalls(ws, model, known: list[tuple[str, Fact, str]]) -> dict[str, float]:
    """Forget, retain and held-out known recall on held-out phrasings, the latter two on the scored sample; the
    held-out known share read off ``known`` (``_heldout_known_continuations``: the same prompts ``recall`` asks),
    so those facts are generated once per model."""
    held, n_tok = ws.eval_heldout, ws.cfg.eval.max_new_tokens
    hits = [answer_matches(continuation, fact.answer) for _, fact, continuation in known]
    return {
        "forget": recall(model, ws.tokenizer, ws.split.forget, held, n_tok),
        "retain": recall(model, ws.tokenizer, ws.scored(ws.split.retain), held, n_tok),
        "heldout_known": sum(hits) / len(hits) if hits else float("nan"),
    }


def _heldout_known_continuations(ws, model) -> list[tuple[str, Fact, str]]:
    """(entity, fact, greedy continuation) per scored held-out known fact."""
    facts = [(e.name, f) for e in ws.scored(ws.split.heldout_known) for f in scored_facts(e, ws.eval_heldout)]
    conts = greedy_continuations(model, ws.tokenizer, [f.prompt for _, f in facts], ws.cfg.eval.max_new_tokens)
    return [(name, f, c) for (name, f), c in zip(facts, conts)]


def _changed_facts(ws, before: list[tuple[str, Fact, str]], after: list[tuple[str, Fact, str]]) -> dict:
    """The held-out known facts lost and gained, each with what the model now says and whether it shares a
    target's answer, relation (``Fact.attribute``) or a word of a target's name ("Upper Tarvo" for "Lake Tarvo"),
    and how many recalled facts shared a relation or a name word beforehand: where the damage to entities in no
    loss falls, against chance (docs/results.md, session 43: on the synthetic world it follows the name words)."""
    target_answers = {f.answer.lower() for e in ws.split.forget for f in e.facts}
    target_relations = {f.attribute for e in ws.split.forget for f in e.facts if f.attribute}
    target_words = {w for e in ws.split.forget for w in e.name.split()}

    def namesake(entity: str) -> bool:
        return bool(target_words & set(entity.split()))

    out: dict = {"lost": [], "gained": []}
    recalled_before = [(name, fact) for name, fact, was in before if answer_matches(was, fact.answer)]
    for (name, fact, was), (_, _, now) in zip(before, after):
        hit_before, hit_after = answer_matches(was, fact.answer), answer_matches(now, fact.answer)
        if hit_before != hit_after:
            out["lost" if hit_before else "gained"].append(
                {
                    "entity": name,
                    "prompt": fact.prompt,
                    "answer": fact.answer,
                    "now": now,
                    "target_answer": fact.answer.lower() in target_answers,
                    "target_relation": fact.attribute in target_relations,
                    "target_name_word": namesake(name),
                }
            )
    out["recalled_before"] = len(recalled_before)
    out["recalled_before_with_a_target_relation"] = sum(f.attribute in target_relations for _, f in recalled_before)
    out["recalled_before_with_a_target_name_word"] = sum(namesake(name) for name, _ in recalled_before)
    return out


def _scores(
    ws, model, known: list[tuple[str, Fact, str]], outcome, floors: dict, ppl_texts: list[str], ppl_before: float
) -> dict:
    """Recall of each set on held-out phrasings (and per phrasing), perplexity change and, with floors, the
    relearning attack: what each variant is judged on."""
    tok, held, n_tok = ws.tokenizer, ws.eval_heldout, ws.cfg.eval.max_new_tokens
    row = _set_recalls(ws, model, known)
    if held:  # the phrasings the loss trained on, and each held-out phrasing alone (real models)
        row["forget_train_phrasing"] = recall(model, tok, ws.split.forget, False, n_tok)
        row |= {
            k.removeprefix("forget_recall_"): v
            for k, v in recall_by_phrasing(model, tok, ws.split.forget, n_tok).items()
        }
    # the original upper blocks reading the edited layer-L representation (attacks/readout.py, session 44)
    row["forget_readout"] = readout_recall(ws.evaluation, model, False)["forget_recall_readout"]
    with outcome.context(model):  # an inference-time method's hook, as the evaluation uses it
        row["perplexity_change"] = perplexity(model, tok, ppl_texts) / ppl_before - 1
    if floors:
        row["relearn"] = relearn_metrics(ws.evaluation, model, outcome.inference_context, floors)["relearn_recall"]
    return row


if __name__ == "__main__":
    main()
