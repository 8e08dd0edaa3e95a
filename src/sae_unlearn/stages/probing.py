"""Stage 3a, probing: which entities the model knows (the share of their facts it recalls, as Ferrando et
al.), and which of their facts it completes for made-up names too (those test the prompt, not the entity).

Probing depends on the original weights only, so it is cached per model, settings and entity set.
"""

from __future__ import annotations

import logging

from sae_unlearn import parallel
from sae_unlearn.entities.fictional import fictional_entities
from sae_unlearn.entities.types import Entity
from sae_unlearn.metrics.answerable import mark_answerable
from sae_unlearn.metrics.probing_cache import load_probing, probing_cache_path, save_probing
from sae_unlearn.metrics.recall import entity_recall_shares
from sae_unlearn.models.layers import model_device
from sae_unlearn.state import Workspace

log = logging.getLogger("sae_unlearn")


def probe_entities(ws: Workspace) -> Workspace:
    """``ws.probing``: per candidate, the share of its facts the original model recalls; on real models
    also the answerable flags of the known (and the requested, partly known) entities' facts."""
    cfg = ws.cfg
    check_answerable = ws.world is None and cfg.eval.answerable_substitutes > 0
    cache = (
        probing_cache_path(ws.model_dir, _probing_settings(ws), ws.candidates + ws.never_seen)
        if ws.world is None and ws.cacheable and not ws.probing
        else None
    )
    cached = load_probing(cache, ws.candidates) if cache is not None and parallel.agree(cache.exists()) else None
    if cached is not None:
        ws.probing, flagged = cached
        if check_answerable and flagged is not None:
            _apply_answerable(ws, flagged)
        log.info("probing results reused from %s", cache)
    if len(ws.probing) != len(ws.candidates):  # probing depends on the original model only: once per workspace
        # real models: on the training phrasing (held-out questions and mentions are harder; they are what
        # evaluation reads, before and after, never what decides who is known)
        shares = entity_recall_shares(
            ws.model,
            ws.tokenizer,
            ws.candidates,
            cfg.eval.max_new_tokens,
            heldout=False if ws.world is None and ws.eval_heldout else None,
        )
        ws.probing = {e.name: s for e, s in zip(ws.candidates, shares)}
    if check_answerable and not ws.answerable_checked:
        flag_answerable_facts(ws)
    if cache is not None and cached is None and parallel.is_main():
        save_probing(cache, ws.probing, ws.candidates if ws.answerable_checked else None)
    if check_answerable:
        flag_requested_partial(ws)
    return ws


def _probing_settings(ws: Workspace) -> dict:
    """What probing and the answerable check depend on besides the weights and the entities."""
    e = ws.cfg.eval
    return {
        "dtype": ws.cfg.model.dtype,
        "device": str(model_device(ws.model).type),
        "seed": ws.cfg.seed,
        "max_new_tokens": e.max_new_tokens,
        "known_threshold": e.known_threshold,
        "answerable_substitutes": e.answerable_substitutes,
    }


def flag_answerable_facts(ws: Workspace) -> None:
    """Mark, once, the facts of the probed-known entities that the model completes for made-up names
    too (metrics/answerable.py); an entity with nothing else shows no knowledge of its own and is not
    known. The made-up names are drawn apart from the evaluation's unknown entities, so the
    same-prompt floor measured on those stays an independent check."""
    cfg = ws.cfg
    idx = [i for i, e in enumerate(ws.candidates) if ws.probing[e.name] >= cfg.eval.known_threshold]
    _apply_answerable(ws, _flagged(ws, idx))


def flag_requested_partial(ws: Workspace) -> None:
    """Requested targets known in part are checked like known entities (a few facts: not cached)."""
    cfg = ws.cfg
    requested = set(cfg.unlearn.forget)
    idx = [
        i
        for i, e in enumerate(ws.candidates)
        if e.name in requested and 0 < ws.probing[e.name] < cfg.eval.known_threshold
    ]
    if idx:
        _apply_answerable(ws, _flagged(ws, idx))


def _flagged(ws: Workspace, idx: list[int]) -> list[Entity]:
    """``ws.candidates`` with the answerable flags of the entities at ``idx`` set (metrics/answerable.py)."""
    cfg = ws.cfg
    taken = {e.name for e in ws.candidates + ws.never_seen}
    names = fictional_entities(ws.candidates, cfg.eval.answerable_substitutes, seed=cfg.seed + 1, avoid=taken)
    flagged = mark_answerable(
        ws.model,
        ws.tokenizer,
        [ws.candidates[i] for i in idx],
        names,
        cfg.eval.answerable_substitutes,
        cfg.eval.max_new_tokens,
    )
    candidates = list(ws.candidates)
    for i, entity in zip(idx, flagged):
        candidates[i] = entity
    return candidates


def _apply_answerable(ws: Workspace, candidates: list[Entity]) -> None:
    """Take ``candidates`` (flags set) as the workspace's entities; note who has no other fact."""
    threshold = ws.cfg.eval.known_threshold
    ws.candidates = candidates
    ws.all_answerable = [
        e.name for e in candidates if ws.probing[e.name] >= threshold and all(f.answerable for f in e.facts)
    ]
    ws.partly_answerable_only = [
        e.name for e in candidates if 0 < ws.probing[e.name] < threshold and all(f.answerable for f in e.facts)
    ]
    ws.answerable_checked = True
    flagged = [e for e in candidates if ws.probing[e.name] >= threshold]
    n = sum(f.answerable for e in flagged for f in e.facts)
    log.info(
        "%d of %d facts of known entities are completed for made-up names too (left out of recall); "
        "%d entities had no other fact",
        n,
        sum(len(e.facts) for e in flagged),
        len(ws.all_answerable),
    )
