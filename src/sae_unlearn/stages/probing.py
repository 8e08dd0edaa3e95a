"""Stage 3a, probing: which entities the model knows (the share of their facts it recalls, as Ferrando et
al.), and which of their facts it completes for made-up names too (those test the prompt, not the entity).

Probing depends on the original weights only, so it is cached per model, settings and entity set.
"""

from __future__ import annotations

import logging

from sae_unlearn import parallel
from sae_unlearn.config import DemoConfig
from sae_unlearn.entities.fictional import fictional_entities
from sae_unlearn.entities.types import Entity
from sae_unlearn.metrics.answerable import mark_answerable
from sae_unlearn.metrics.probing_cache import load_probing, probing_cache_path, save_probing
from sae_unlearn.metrics.recall import entity_recall_shares
from sae_unlearn.models.layers import model_device
from sae_unlearn.state import Probing, Workspace

log = logging.getLogger("sae_unlearn")


def probe_entities(ws: Workspace) -> Workspace:
    """``ws`` with its probing record: per candidate, the share of its facts the original model recalls; on real
    models also the answerable flags of the known (and the requested, partly known) entities' facts. Probing
    depends on the original model only: once per workspace."""
    if ws.probing_record is not None:
        return ws
    cfg = ws.cfg
    check_answerable = ws.world is None and cfg.eval.answerable_substitutes > 0
    candidates = ws.subject.entities
    cache = (
        probing_cache_path(ws.model_dir, _probing_settings(ws), candidates + ws.never_seen)
        if ws.world is None and ws.cacheable
        else None
    )
    cached = load_probing(cache, candidates) if cache is not None and parallel.agree(cache.exists()) else None
    record: Probing | None = None
    if cached is not None:
        shares, flagged = cached
        record = Probing(shares, candidates)
        if check_answerable and flagged is not None:
            record = _with_answerable(cfg, record, flagged)
        log.info("probing results reused from %s", cache)
    if record is None or len(record.shares) != len(candidates):
        # real models: on the training phrasing (held-out questions and mentions are harder; they are what
        # evaluation reads, before and after, never what decides who is known)
        recalled = entity_recall_shares(
            ws.model,
            ws.tokenizer,
            candidates,
            cfg.eval.max_new_tokens,
            heldout=False if ws.world is None and ws.eval_heldout else None,
        )
        record = Probing({e.name: s for e, s in zip(candidates, recalled)}, candidates)
    if check_answerable and not record.answerable_checked:
        record = flag_answerable_facts(ws, record)
    if cache is not None and cached is None and parallel.is_main():
        save_probing(cache, record.shares, record.candidates if record.answerable_checked else None)
    if check_answerable:
        record = flag_requested_partial(ws, record)
    return ws.with_(probing_record=record)


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


def flag_answerable_facts(ws: Workspace, record: Probing) -> Probing:
    """Mark, once, the facts of the probed-known entities that the model completes for made-up names
    too (metrics/answerable.py); an entity with nothing else shows no knowledge of its own and is not
    known. The made-up names are drawn apart from the evaluation's unknown entities, so the
    same-prompt floor measured on those stays an independent check."""
    cfg = ws.cfg
    idx = [i for i, e in enumerate(record.candidates) if record.shares[e.name] >= cfg.eval.known_threshold]
    return _with_answerable(cfg, record, _flagged(ws, record.candidates, idx))


def flag_requested_partial(ws: Workspace, record: Probing) -> Probing:
    """Requested targets known in part are checked like known entities (a few facts: not cached)."""
    cfg = ws.cfg
    requested = set(cfg.unlearn.forget)
    idx = [
        i
        for i, e in enumerate(record.candidates)
        if e.name in requested and 0 < record.shares[e.name] < cfg.eval.known_threshold
    ]
    return _with_answerable(cfg, record, _flagged(ws, record.candidates, idx)) if idx else record


def _flagged(ws: Workspace, candidates: list[Entity], idx: list[int]) -> list[Entity]:
    """``candidates`` with the answerable flags of the entities at ``idx`` set (metrics/answerable.py)."""
    cfg = ws.cfg
    taken = {e.name for e in candidates + ws.never_seen}
    names = fictional_entities(candidates, cfg.eval.answerable_substitutes, seed=cfg.seed + 1, avoid=taken)
    flagged = mark_answerable(
        ws.model,
        ws.tokenizer,
        [candidates[i] for i in idx],
        names,
        cfg.eval.answerable_substitutes,
        cfg.eval.max_new_tokens,
    )
    out = list(candidates)
    for i, entity in zip(idx, flagged):
        out[i] = entity
    return out


def _with_answerable(cfg: DemoConfig, record: Probing, candidates: list[Entity]) -> Probing:
    """``record`` with ``candidates`` (flags set) as its entities; note who has no other fact."""
    threshold, shares = cfg.eval.known_threshold, record.shares
    all_answerable = [e.name for e in candidates if shares[e.name] >= threshold and all(f.answerable for f in e.facts)]
    flagged = [e for e in candidates if shares[e.name] >= threshold]
    n = sum(f.answerable for e in flagged for f in e.facts)
    log.info(
        "%d of %d facts of known entities are completed for made-up names too (left out of recall); "
        "%d entities had no other fact",
        n,
        sum(len(e.facts) for e in flagged),
        len(all_answerable),
    )
    return Probing(
        shares,
        candidates,
        answerable_checked=True,
        all_answerable=all_answerable,
        partly_answerable_only=[
            e.name for e in candidates if 0 < shares[e.name] < threshold and all(f.answerable for f in e.facts)
        ],
    )
