"""Stage 3b, the split: forget targets (the user's names or a seeded draw of known entities), retain and
held-out known entities, unknown entities for the reference and for evaluation.
"""

from __future__ import annotations

import logging
import random
import time

from sae_unlearn.entities.indirect import split_off_answers
from sae_unlearn.entities.types import Entity, EntitySplit
from sae_unlearn.errors import UserInputError
from sae_unlearn.stages.name_only import NameOnlySettings, describe_names, evaluation_entity
from sae_unlearn.stages.probing import probe_entities
from sae_unlearn.state import DescribedName, SplitRecord, Workspace

log = logging.getLogger("sae_unlearn")


def make_split(ws: Workspace) -> Workspace:
    """Known = the model recalls at least ``known_threshold`` of the entity's facts (probing, as
    Ferrando et al.); unknown = never-seen entities, plus (real models) file entities recalled not at all."""
    cfg = ws.cfg
    t0 = time.time()
    ws = probe_entities(ws)
    shares = [ws.probing[e.name] for e in ws.candidates]
    known = [
        e for e, s in zip(ws.candidates, shares) if s >= cfg.eval.known_threshold and e.name not in ws.all_answerable
    ]
    rng = random.Random(cfg.seed)
    described = _describe_requested(ws, known) if cfg.unlearn.name_only else []
    forget, skipped = _forget_targets(ws, known, rng, described)
    forget_names = {e.name for e in forget} | set(cfg.unlearn.forget)  # a skipped request is not kept either
    others = [e for e in known if e.name not in forget_names]
    rng.shuffle(others)
    n_retain = max(1, int(round(len(others) * cfg.unlearn.retain_fraction)))
    unknown = list(ws.never_seen)
    rng.shuffle(unknown)
    half = len(unknown) // 2
    # a fact whose answer is a target is the target's knowledge: neither kept by a retain loss nor scored as
    # collateral damage (reverse questions score its held-out phrasings); its training phrasings may be forgotten
    retain, retained_answers = split_off_answers(others[:n_retain], forget)
    heldout_known, heldout_answers = split_off_answers(others[n_retain:], forget)
    split = EntitySplit(
        forget=forget,
        retain=retain,
        heldout_known=heldout_known,
        unknown=unknown[:half],
        answering=retained_answers + heldout_answers,
    )
    unknown_eval = unknown[half:]
    if ws.world is None:  # real file entities the model recalls nothing of are unknown too
        never = [e for e, s in zip(ws.candidates, shares) if s == 0 and e.name not in forget_names]
        rng.shuffle(never)
        unknown_eval += never[: cfg.entities.max_unknown_eval]
    split.validate()
    ws.timings["probing"] = time.time() - t0
    log.info("probing: %d of %d entities known; %d targets", len(known), len(ws.candidates), len(forget))
    record = SplitRecord(
        split=split,
        unknown_eval=unknown_eval,
        n_known=len(known),
        skipped_forget=skipped,
        forget_known_facts=_known_fact_counts(ws, forget),
        described=described,
    )
    return ws.with_(split_record=record)


def _forget_targets(
    ws: Workspace, known: list[Entity], rng: random.Random, described: list[DescribedName] | None = None
) -> tuple[list[Entity], list[str]]:
    """The user's names (each known to the model, at least in part) or ``n_forget`` random known entities, and the
    requested names skipped as not known. With --name-only, ``described`` holds what the model said of each name."""
    cfg = ws.cfg
    if cfg.unlearn.name_only:
        return _name_only_targets(ws, described or [])
    by_name = {e.name: e for e in known}
    if not cfg.unlearn.forget:
        if cfg.unlearn.n_forget >= len(known):
            hint = (
                f" On the synthetic world, {len(known)} of {len(ws.candidates)} known entities means its model "
                "learned the corpus poorly: raise world_model.epochs or set world_model.grad_clip (1.0)."
                if ws.world is not None and len(known) < len(ws.candidates) / 2
                else ""
            )
            raise UserInputError(
                f"n_forget={cfg.unlearn.n_forget} but only {len(known)} entities are known "
                f"(recall >= {cfg.eval.known_threshold:.0%} of their facts); lower it.{hint}"
            )
        return rng.sample(known, cfg.unlearn.n_forget), []
    all_names = {e.name for e in ws.candidates} | (
        {e.name for e in ws.world.obscure + ws.world.unknown} if ws.world else set()
    )
    missing = [n for n in cfg.unlearn.forget if n not in all_names]
    if missing:
        raise UserInputError(f"Forget entities {missing} are not in the entity set; check the spelling.")
    # a target the model knows in part is a target: forget what it knows (issue 21)
    candidates = {e.name: e for e in ws.candidates}
    by_name |= {
        n: candidates[n]
        for n in cfg.unlearn.forget
        if n not in by_name
        and n in candidates
        and ws.probing.get(n, 0.0) > 0
        and n not in ws.all_answerable + ws.partly_answerable_only
    }
    not_known = [n for n in cfg.unlearn.forget if n not in by_name]
    skipped: list[str] = []
    if not_known:
        answerable = set(ws.all_answerable + ws.partly_answerable_only)
        detail = ", ".join(
            f"{n} (every recalled fact is also completed for made-up names)"
            if n in answerable
            else f"{n} (recall {ws.probing.get(n, 0.0):.0%})"
            for n in not_known
        )
        skipped = _skip_not_known(ws, not_known, detail)
    return [by_name[n] for n in cfg.unlearn.forget if n in by_name], skipped


def _skip_not_known(ws: Workspace, not_known: list[str], detail: str) -> list[str]:
    """Requested names the model does not know: an error under --strict (or when none is left), else skipped
    (returned)."""
    cfg = ws.cfg
    msg = f"Forget entities the model knows nothing of: {detail}; there is nothing to forget."
    if cfg.entities.strict or ws.world is not None or len(not_known) == len(cfg.unlearn.forget):
        raise UserInputError(
            msg + (" Remove them, or run without --strict to skip them." if cfg.entities.strict else "")
        )
    log.warning("%s Skipping them (use --strict to stop instead).", msg)
    return not_known


def _describe_requested(ws: Workspace, known: list[Entity]) -> list[DescribedName]:
    """--name-only: what the model says about each requested name (stages/name_only.py)."""
    cfg = ws.cfg  # config.load_config has checked that names and a real model are given
    return describe_names(
        ws.model,
        ws.tokenizer,
        list(cfg.unlearn.forget),
        ws.candidates,
        known,
        ws.layer,
        NameOnlySettings(max_new_tokens=cfg.eval.max_new_tokens),
        seed=cfg.seed,
    )


def _name_only_targets(ws: Workspace, described: list[DescribedName]) -> tuple[list[Entity], list[str]]:
    """--name-only: the losses get what the model says about each name; evaluation reads the file's facts of a
    name the file has (with their answerable flags), else the described ones. Also the names skipped."""
    not_known = [d for d in described if not d.known]
    skipped: list[str] = []
    if not_known:
        skipped = _skip_not_known(
            ws,
            [d.name for d in not_known],
            ", ".join(
                f"{d.name} (read as a {d.type}; none of {d.asked} questions answered with confidence, or only with "
                "answers it gives for made-up names too)"
                for d in not_known
            ),
        )
    in_file = {e.name: e for e in ws.candidates}
    for d in described:
        log.info(
            "name-only: %s read as a %s; %d facts the model gives: %s",
            d.name,
            d.type,
            len(d.facts),
            "; ".join(f"{f.prompt} {f.answer}" for f in d.facts[:6]),
        )
    return [evaluation_entity(d, in_file.get(d.name)) for d in described if d.known], skipped


def _known_fact_counts(ws: Workspace, targets: list[Entity]) -> dict[str, tuple[int, int]]:
    """Per target, how many of its probed (training-phrasing) facts the original model recalled."""
    probed = (lambda f: not f.heldout) if ws.world is None and ws.eval_heldout else (lambda f: True)
    counts = {}
    for e in targets:
        n = sum(map(probed, e.facts))
        counts[e.name] = (round(ws.probing.get(e.name, 1.0) * n), n)
    return counts
