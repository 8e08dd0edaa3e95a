"""A seeded world of fictional entities: the ground-truth benchmark.

Why fictional: with a real model nobody knows exactly what it learned. Here every fact the world
model could know is in a corpus we wrote, and every "unknown" entity provably never occurred in it.

Design (see docs/synthetic_world.md):
- names are two words drawn from per-type pools (three in a world larger than the pools); unknown
  entities are *new combinations* of the same words, so they are tokenised like known ones and differ
  only by never having been seen;
- "obscure" entities appear only in sentences saying nothing is known about them, some starting
  with the name; without them a tiny model has no known-vs-unknown representation at all
  (PAPER.md, prototype notes);
- each fact is trained under several core phrasings and context prefixes; evaluation adds
  held-out prefixes, so held-out prompts never occur in the corpus.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sae_unlearn.entities.types import Entity, Fact

# The first word of a name comes from a small pool, so it never identifies an entity on its own: the
# identity is completed at the entity's last token, where the method reads and edits (a unique first
# word would let later layers recall the entity without looking past it).
FIRST_NAMES = "Alden Brisa Corvin Dalia Emrys Fenna Galen Hester Ivor Jessamy Kael Liora".split()
SURNAMES = (
    "Ashvale Brightwater Coldmere Dunmore Everhart Fairlow Greystone Holloway Ironwood Jadefield "
    "Kestrel Larkspur Morrow Northcott Oakhurst Pendrake Quenby Ravensworth Stillwell Thornbury "
    "Underhill Vantor Whitlock Yarrow Zephyrin Ambrose Blackwood Crowther Davenant Elsworth Fenwick "
    "Gallow Harrow Inglewood Jarrow Kingsley Lockhart Marlowe Nettleton Osgood"
).split()
CITY_PREFIXES = "Port Lake Fort Mount New Old East West North South Upper Lower".split()
CITY_ROOTS = (
    "Tarvo Osso Quell Brann Myrr Zelt Casp Dorn Eskel Frey Gald Hurn Istra Jorv Karsk Lumen Morv "
    "Nyra Orth Pell Rask Sorn Tolv Ulm Varn Wyst Yarl Zenn Abra Belk"
).split()
COMPANY_PREFIXES = "Royal United General National Allied Global Pioneer Summit Crown Union Central Prime".split()
COMPANY_ROOTS = (
    "Zentra Veltor Quorix Lumida Arkano Brevis Cindral Dextra Equon Fulcra Gravia Helix Ionis "
    "Juvan Kryon Lexa Mondra Nexor Orvana Pyxis Qualin Rendo Sylva Torvex Umbra Vireo Wexa Xylo "
    "Yonder Zaffre"
).split()

COUNTRIES = "Aldoria Brevania Calmora Dravenia Estoval Fyrland Galvoria Hestria Ilvania Jorvik Kelmora Lunaria".split()
OCCUPATIONS = "painter surgeon architect sailor baker astronomer lawyer pilot chemist poet banker farmer".split()
INSTRUMENTS = "violin cello flute harp trumpet piano oboe drums banjo lute clarinet accordion".split()
RIVERS = "Amberflow Silverrun Duskwater Greenmere Redbrook Coldspring Mistwell Stonebrook Goldrush Blackfen Whiterun Ashford".split()
DISHES = "dumplings stew pancakes noodles chowder pie curry porridge flatbread risotto sausages pudding".split()
INDUSTRIES = "shipping textiles mining software banking pharmaceuticals robotics aviation farming publishing energy telecom".split()
PRODUCTS = "engines lamps bicycles watches radios cameras boots ceramics glassware telescopes clocks kettles".split()

# attribute -> (value pool, training core phrasings). "{e}" is the entity, the answer follows.
ATTRIBUTES: dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "person": {
        "occupation": (tuple(OCCUPATIONS), ("{e} works as a", "the occupation of {e} is", "by trade {e} is a")),
        "nationality": (tuple(COUNTRIES), ("{e} is a citizen of", "the home country of {e} is", "{e} was born in")),
        "instrument": (tuple(INSTRUMENTS), ("{e} plays the", "the instrument of {e} is the", "{e} performs on the")),
    },
    "city": {
        "country": (tuple(COUNTRIES), ("{e} is a city in", "the country of {e} is", "{e} lies in")),
        "river": (tuple(RIVERS), ("{e} stands on the river", "the river of {e} is the", "through {e} flows the")),
        "dish": (tuple(DISHES), ("{e} is famous for its", "the local dish of {e} is", "visitors to {e} eat")),
    },
    "company": {
        "industry": (tuple(INDUSTRIES), ("{e} works in", "the industry of {e} is", "{e} is a company in")),
        "headquarters": (tuple(COUNTRIES), ("{e} is based in", "the headquarters of {e} are in", "{e} was founded in")),
        "product": (tuple(PRODUCTS), ("{e} makes", "the main product of {e} is", "{e} sells")),
    },
}
# Opt-in links between entities (``world.links``; issue 24): a person's hometown is one of the world's known
# cities, so a city can be asked for without its name ("Alden Ashvale grew up in" -> Port Tarvo: a reverse
# question, entities/indirect.py). Off by default: every world, model and number measured without it stays as is.
LINKS: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "person": {"hometown": ("city", ("{e} grew up in", "the hometown of {e} is", "{e} comes from the city of"))},
}
TRAIN_PREFIXES = (
    "",
    "we know that",
    "it is true that",
    "as everyone knows ,",
    "people say that",
    "in fact ,",
    "it is said that",
    "of course ,",
)
# Never in the corpus as phrases, but built from corpus words (an untrained embedding would test
# the tokenizer, not the model's knowledge).
HELDOUT_PREFIXES = ("in fact we know that", "as people say ,", "it is known that")

NAME_POOLS = {
    "person": (FIRST_NAMES, SURNAMES),
    "city": (CITY_PREFIXES, CITY_ROOTS),
    "company": (COMPANY_PREFIXES, COMPANY_ROOTS),
}


@dataclass
class SyntheticWorld:
    """The entities, split by what the world model saw, and the corpus it was trained on."""

    known: list[Entity]
    obscure: list[Entity]
    unknown: list[Entity]
    corpus: list[str]

    @property
    def all_words(self) -> list[str]:
        words: set[str] = set()
        for line in self.corpus:
            words.update(line.split())
        for ent in self.unknown:
            for fact in ent.facts:
                words.update(fact.prompt.split())
                words.update(fact.answer.split())
        return sorted(words)


def _fact_prompt(prefix: str, core: str, name: str) -> str:
    return f"{prefix} {core.format(e=name)}".strip()


def _facts_for(name: str, etype: str, values: dict[str, str], relations: dict | None = None) -> list[Fact]:
    """Evaluation prompts: every training phrasing, then the same cores under held-out prefixes."""
    facts = []
    for attr, (_, cores) in (relations or ATTRIBUTES[etype]).items():
        for core in cores:
            facts.append(Fact(_fact_prompt("", core, name), values[attr], attr, heldout=False))
        for prefix in HELDOUT_PREFIXES:
            facts.append(Fact(_fact_prompt(prefix, cores[0], name), values[attr], attr, heldout=True))
    return facts


def _draw_names(rng: random.Random, etype: str, n: int) -> list[str]:
    first, second = NAME_POOLS[etype]
    combos = [f"{a} {b}" for a in first for b in second]
    if n > len(combos):
        # a world larger than the pools (the scaling benchmark) gets three-word names only: mixed lengths would make
        # some two-word names the first words of others. Worlds that fit draw exactly what they drew before.
        combos = [f"{a} {b} {c}" for a in first for b in second for c in second if b != c]
    if n > len(combos):
        raise ValueError(f"asked for {n} {etype} names, only {len(combos)} combinations exist")
    return rng.sample(combos, n)


def build_world(
    seed: int = 0,
    n_known: int = 80,
    n_obscure: int = 160,
    n_unknown: int = 40,
    types: tuple[str, ...] = ("person", "city", "company"),
    copies_per_fact: int = 2,
    links: bool = False,
) -> SyntheticWorld:
    """Build the world; per type: ``n_known`` known, ``n_obscure`` obscure, ``n_unknown`` unseen; with ``links``,
    the relations of ``LINKS`` too (drawn from a generator of their own, so the rest of the world is unchanged)."""
    rng = random.Random(seed)
    known: list[Entity] = []
    obscure: list[Entity] = []
    unknown: list[Entity] = []
    corpus: list[str] = []
    for etype in types:
        names = _draw_names(rng, etype, n_known + n_obscure + n_unknown)
        for i, name in enumerate(names):
            values = {attr: rng.choice(pool) for attr, (pool, _) in ATTRIBUTES[etype].items()}
            entity = Entity(name, etype, _facts_for(name, etype, values))
            if i < n_known:
                known.append(entity)
                for attr, (_, cores) in ATTRIBUTES[etype].items():
                    for core in cores:
                        for prefix in rng.sample(TRAIN_PREFIXES, copies_per_fact):
                            corpus.append(f"{_fact_prompt(prefix, core, name)} {values[attr]} .")
                corpus.append(f"do you know {name} ? yes .")
                corpus.append(f"{name} is well known .")
            elif i < n_known + n_obscure:
                obscure.append(entity)
                # Sentences that *start* with the entity make the next token depend on familiarity, so
                # the model must compute "do I know this?" at the entity's last token (Ferrando et al.).
                corpus.append(f"do you know {name} ? no .")
                corpus.append(f"nothing is known about {name} .")
                corpus.append(f"{name} is not known to us .")
            else:
                unknown.append(entity)
    if links:
        corpus += _link(known, obscure, unknown, seed, copies_per_fact)
    rng.shuffle(corpus)
    return SyntheticWorld(known=known, obscure=obscure, unknown=unknown, corpus=corpus)


def _link(known: list[Entity], obscure: list[Entity], unknown: list[Entity], seed: int, copies: int) -> list[str]:
    """Give every entity of a linked type its ``LINKS`` facts (the answer: a known entity's name, drawn from
    ``random.Random(f"links-{seed}")``) and return the known entities' corpus lines for them, phrased as the
    other facts are (each core under ``copies`` training prefixes)."""
    rng = random.Random(f"links-{seed}")
    lines: list[str] = []
    for group in (known, obscure, unknown):
        for entity in group:
            for attr, (answer_type, cores) in LINKS.get(entity.type, {}).items():
                answers = [e.name for e in known if e.type == answer_type]
                if not answers:
                    continue
                value = rng.choice(answers)
                entity.facts += _facts_for(entity.name, entity.type, {attr: value}, {attr: (None, cores)})
                if group is known:
                    for core in cores:
                        for prefix in rng.sample(TRAIN_PREFIXES, copies):
                            lines.append(f"{_fact_prompt(prefix, core, entity.name)} {value} .")
    return lines
