import pytest

from sae_unlearn.entities.synthetic import ATTRIBUTES, build_world
from sae_unlearn.models.world_model import world_cache_key


def test_world_is_deterministic_per_seed_and_differs_across_seeds():
    a, b, c = build_world(seed=1, n_known=6), build_world(seed=1, n_known=6), build_world(seed=2, n_known=6)
    assert a.corpus == b.corpus and [e.name for e in a.known] == [e.name for e in b.known]
    assert [e.name for e in a.known] != [e.name for e in c.known]


def test_types_attributes_and_unknowns_never_seen():
    w = build_world(seed=0, n_known=8, n_obscure=4, n_unknown=6)
    assert len({e.type for e in w.known}) >= 3
    assert all(len(attrs) >= 3 for attrs in ATTRIBUTES.values())
    text = "\n".join(w.corpus)
    for ent in w.unknown:
        assert ent.name not in text, f"unknown entity {ent.name} leaked into the corpus"
    for ent in w.known:
        assert ent.name in text


def test_heldout_phrasings_never_occur_in_training_corpus():
    w = build_world(seed=0, n_known=8)
    sentences = set(w.corpus)
    for ent in w.known:
        held = [f for f in ent.facts if f.heldout]
        assert held, "every entity needs held-out phrasings"
        for fact in held:
            assert not any(fact.prompt in s for s in sentences), fact.prompt
        train = [f for f in ent.facts if not f.heldout]
        assert any(train[0].prompt in s for s in sentences)


def test_perplexity_reads_the_phrasings_the_world_model_learned(micro_workspace):
    """Held-out word orders are text the world model never saw: their perplexity fell under unlearning and
    hid the damage to answers (docs/metrics.md), so perplexity is read on the trained phrasings."""
    from sae_unlearn.evaluation.evaluate import perplexity_texts
    from sae_unlearn.metrics.utility import perplexity

    ws = micro_workspace
    texts = perplexity_texts(ws.evaluation, ws.split.other_known)
    heldout = [f"{f.prompt} {f.answer} ." for e in ws.split.other_known for f in e.facts if f.heldout]
    assert texts and heldout and not set(texts) & set(heldout)
    assert perplexity(ws.model, ws.tokenizer, texts) < perplexity(ws.model, ws.tokenizer, heldout)


def test_perplexity_does_not_depend_on_the_tokenizers_padding_side(micro_workspace):
    """A tokenizer that pads on the left (Gemma's default, and the copy `attack` loads from a saved run) shifts
    every real token's position; perplexity read 59.0 instead of 40.1 on a Gemma-3-270M run that way. It now pads
    right whatever the tokenizer says, and leaves the tokenizer as it found it."""
    from sae_unlearn.evaluation.evaluate import perplexity_texts
    from sae_unlearn.metrics.utility import perplexity

    ws = micro_workspace
    texts = perplexity_texts(ws.evaluation, ws.split.other_known)
    assert len({len(ws.tokenizer(t)["input_ids"]) for t in texts}) > 1  # the batch pads
    side = ws.tokenizer.padding_side
    read = {}
    try:
        for pad in ("left", "right"):
            ws.tokenizer.padding_side = pad
            read[pad] = perplexity(ws.model, ws.tokenizer, texts)
            assert ws.tokenizer.padding_side == pad
    finally:
        ws.tokenizer.padding_side = side
    assert read["left"] == pytest.approx(read["right"], rel=1e-5), read


def test_a_world_larger_than_the_name_pools_adds_three_word_names_and_leaves_smaller_worlds_as_they_were():
    """The scaling benchmark's 1,000 targets need more than the 360 two-word city names; every world that fits
    the two-word pools (every tuned and reported one) must keep drawing exactly the names it drew before."""
    small = build_world(seed=0)
    assert all(len(e.name.split()) == 2 for e in small.known + small.obscure + small.unknown)
    assert [e.name for e in small.known[:3]] == ["Kael Harrow", "Emrys Marlowe", "Jessamy Davenant"]  # as before
    large = build_world(seed=0, n_known=420, n_obscure=10, n_unknown=10)
    entities = large.known + large.obscure + large.unknown
    assert len({e.name for e in entities}) == 3 * 440
    lengths = {t: {len(e.name.split()) for e in entities if e.type == t} for t in ("person", "city", "company")}
    # 480 two-word person names suffice; cities and companies have 360: one length per type, so no name opens another
    assert lengths == {"person": {2}, "city": {3}, "company": {3}}
    text = "\n".join(large.corpus)
    for ent in large.unknown:
        assert ent.name not in text, f"unknown entity {ent.name} leaked into the corpus"


def test_a_cached_world_model_is_reused_only_for_the_very_same_corpus():
    """The cache key read only the config once: a changed name generator then reused a model that had learned
    other entities (every target looked unknown). Same config, another corpus: another key."""
    cfg, model = {"seed": 0, "n_known": 6}, {"n_layer": 2}
    corpus = build_world(seed=0, n_known=6).corpus
    assert world_cache_key(cfg, model, corpus) == world_cache_key(cfg, model, list(corpus))
    assert world_cache_key(cfg, model, corpus) != world_cache_key(cfg, model, corpus[:-1] + ["Kael Harrow is a poet ."])


def test_linked_worlds_clip_their_world_models_gradients_and_unlinked_ones_stay_as_cached():
    """World seed 1's linked model hit a loss spike at its peak lr and knew 4 of 240 entities; clipped at 1.0 (the
    linked worlds' default) it knows 230, like the others (215-230). Unlinked worlds keep their cached models."""
    from sae_unlearn.config import DemoConfig

    assert DemoConfig.model_validate({"world": {"links": True}}).world_model.grad_clip == 1.0
    assert DemoConfig().world_model.grad_clip is None
    chosen = {"world": {"links": True}, "world_model": {"grad_clip": 5.0}}
    assert DemoConfig.model_validate(chosen).world_model.grad_clip == 5.0  # the user's value wins
    written = {"world": {"links": True}, "world_model": {"grad_clip": None}}  # an unlinked run's config.yaml, edited
    assert DemoConfig.model_validate(written).world_model.grad_clip == 1.0
    cfg, corpus = {"seed": 0, "n_known": 6}, build_world(seed=0, n_known=6).corpus
    before = world_cache_key(cfg, {"n_layer": 2}, corpus)  # a key written before the option existed
    assert world_cache_key(cfg, {"n_layer": 2, "grad_clip": None}, corpus) == before
    assert world_cache_key(cfg, {"n_layer": 2, "grad_clip": 1.0}, corpus) != before


def test_a_world_model_that_learned_too_little_says_how_to_train_it_better(micro_config_file):
    import pytest

    from sae_unlearn.config import load_config
    from sae_unlearn.errors import UserInputError
    from sae_unlearn.stages.split import make_split
    from sae_unlearn.stages.subject import build_synthetic

    cfg = load_config(micro_config_file, {"world_model.epochs": 1})
    ws = build_synthetic(cfg, progress=False)
    with pytest.raises(UserInputError, match=r"learned the corpus poorly.*world_model\.grad_clip"):
        make_split(ws)
