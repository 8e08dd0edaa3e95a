from sae_unlearn.entities.synthetic import ATTRIBUTES, build_world


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
    texts = perplexity_texts(ws, ws.split.other_known)
    heldout = [f"{f.prompt} {f.answer} ." for e in ws.split.other_known for f in e.facts if f.heldout]
    assert texts and heldout and not set(texts) & set(heldout)
    assert perplexity(ws.model, ws.tokenizer, texts) < perplexity(ws.model, ws.tokenizer, heldout)
