"""Held-out phrasings of a fact: the same knowledge asked in words no unlearning loss ever sees.

Why: forgetting an entity means its facts are gone however they are asked. A method trained on one
cloze sentence per fact can learn to dodge that sentence and still answer a question, a passing
mention or a reworded statement (issue 21 measured SmolLM2 giving back more than half of its
"forgotten" facts that way). So every fact of a real entity file gets, beside its cloze prompt (the
training phrasing), three held-out phrasings that evaluation reads and no loss does:

- ``question``: a ``Q: ... A:`` question, worded per relation for the relations the bundled file uses
  most, else a generic "how does this sentence end" question;
- ``passing``: the fact mentioned in passing at the end of a longer sentence about something else;
- ``appositive``: the entity named, then an aside, then the relation ("Paris, as many people know, is
  the capital of").

One fixed question-and-answer pair about no entity of ours opens every question, so a base model
answers in the expected shape; the same-prompt floor (unknown names in the very same prompts) absorbs
whatever that shape gives away. All phrasings of a fact share its ``attribute`` (the relation), so the
relearning attack never teaches one phrasing of a fact and asks another. Decision: docs/metrics.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

from sae_unlearn.entities.types import Entity, Fact

TRAIN_PHRASING = "cloze"
HELDOUT_PHRASINGS = ("question", "passing", "appositive")
# how the report names each phrasing (a file may bring others: they are shown by name)
PHRASING_LABELS = {
    "question": "questions",
    "passing": "mentioned in passing",
    "appositive": "the name with an aside",
    TRAIN_PHRASING: "cloze statements",
}
QUESTION_EXAMPLE = "Q: What is the largest planet in the Solar System? A: Jupiter\n"

# (cloze template with the name as {e}, question with {e} and groups as {1}..., what the answer follows)
_QUESTIONS: tuple[tuple[str, str, str], ...] = (
    (r"{e} is located on the continent of", "Which continent is {e} located on?", ""),
    (r"(The )?{e} is a country on the continent of", "Which continent is the country {the}{e} on?", ""),
    (r"{e} is a city in the (country|state|province) of", "Which {1} is the city of {e} in?", ""),
    (r"{e} is a city in the", "Which country is the city of {e} in?", "The"),
    (r"{e} is the capital of( the)?", "Which country has {e} as its capital city?", "{1}"),
    (r"The capital of (the )?{e} is", "What is the capital city of {the}{e}?", ""),
    (r"The main language spoken in (the )?{e} is", "What is the main language spoken in {the}{e}?", ""),
    (r"The currency of (the )?{e} is the", "What is the name of the currency of {the}{e}?", "The"),
    (r"{e} was born in the (city|country|state|town|village) of", "In which {1} was {e} born?", ""),
    (r"{e} was born on the island of", "On which island was {e} born?", ""),
    (r"(The )?{e} is headquartered in", "Where is {the}{e} headquartered?", ""),
    (r"{e} (?:was|is) based in the city of", "In which city is {e} based?", ""),
    (r"{e} was founded in the city of", "In which city was {e} founded?", ""),
    (r"{e} was written by", "Who wrote {e}?", ""),
    (r"{e} was painted by", "Who painted {e}?", ""),
    (r"{e} was founded by", "Who founded {e}?", ""),
    (r"{e} is a song by", "Who recorded the song {e}?", ""),
    (r"(?:The film )?{e} was directed by", "Who directed the film {e}?", ""),
    (r"{e} won the Nobel Prize in", "In which field did {e} win the Nobel Prize?", ""),
    (r"{e} was originally written in", "In which language was {e} originally written?", ""),
    (r"(The )?{e} is located in", "Where is {the}{e} located?", ""),
    (r"(The )?{e} is located in the country of", "In which country is {the}{e} located?", ""),
    (r"{e} (was|is) an? ([a-z][a-z ]*?) from", "Where {1} the {2} {e} from?", ""),
    (
        r"{e} was the (president|prime minister|king|queen|emperor|empress|tsar|sultan|leader) of( the)?",
        "Which country was {e} the {1} of?",
        "{2}",
    ),
)

_PASSING = (
    "I was leafing through an old encyclopedia on a rainy afternoon when I read again that",
    "Over a long dinner that was mostly about holidays and football, my uncle mentioned that",
    "Our teacher, who loved to drift off topic, once told the whole class in passing that",
    "Halfway through a podcast about something else entirely, the host remarked that",
    "While we were waiting for a delayed train this morning, a stranger pointed out that",
)
_ASIDES = (", as many people know,", ", to give one example,", ", for what it is worth,")


def _pick(options: tuple[str, ...], key: str) -> str:
    """A fixed choice per fact (not ``random``: the file must not change between Python versions)."""
    return options[int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(options)]


def _template_regex(template: str, name: str) -> str:
    return "^" + template.replace("{e}", re.escape(name)) + "$"


def question_prompt(name: str, prompt: str) -> str:
    for template, question, answer_lead in _QUESTIONS:
        match = re.match(_template_regex(template, name), prompt)
        if match is None:
            continue
        fills = {f"{{{i}}}": (g or "").strip() for i, g in enumerate(match.groups(), start=1)}
        fills["{the}"] = "the " if prompt[: prompt.find(name)].endswith(("the ", "The ")) else ""
        fills["{e}"] = name  # last: a name may itself contain braces
        text, lead = question, answer_lead
        for slot, value in fills.items():
            text, lead = text.replace(slot, value), lead.replace(slot, value)
        lead = lead.strip()
        lead = lead[:1].upper() + lead[1:]
        return f"{QUESTION_EXAMPLE}Q: {text} A:" + (f" {lead}" if lead else "")
    return f'{QUESTION_EXAMPLE}Q: How does this sentence about {name} end: "{prompt} ..."? A:'


def passing_prompt(name: str, prompt: str) -> str:
    starts_with_name = prompt.startswith(name)
    body = prompt if starts_with_name or not prompt[:1].isupper() else prompt[:1].lower() + prompt[1:]
    return f"{_pick(_PASSING, name + prompt)} {body}"


def appositive_prompt(name: str, prompt: str) -> str:
    """An aside right after the name; a name glued to what follows ("X's") gets the aside as a lead-in."""
    at = prompt.find(name)
    end = at + len(name)
    aside = _pick(_ASIDES, prompt + name)
    if end < len(prompt) and prompt[end] == " ":
        return prompt[:end] + aside + prompt[end:]
    return f"As many people know, {prompt[:1].lower() + prompt[1:] if not prompt.startswith(name) else prompt}"


def relation_key(name: str, fact: Fact) -> str:
    """The fact's relation: its attribute, or its prompt with the name blanked (the relearning attack's too)."""
    return fact.attribute or fact.prompt.replace(name, "{e}")


def heldout_phrasings(name: str, fact: Fact) -> list[Fact]:
    """The three held-out phrasings of one training-phrasing fact, tagged with the fact's relation."""
    makers = {"question": question_prompt, "passing": passing_prompt, "appositive": appositive_prompt}
    attribute = relation_key(name, fact)
    return [
        Fact(makers[p](name, fact.prompt), fact.answer, attribute, heldout=True, phrasing=p) for p in HELDOUT_PHRASINGS
    ]


def with_heldout_phrasings(entity: Entity) -> Entity:
    """``entity`` with held-out phrasings of each training fact; unchanged if it has held-out facts already."""
    if any(f.heldout for f in entity.facts):
        return entity
    facts: list[Fact] = []
    for fact in entity.facts:
        train = dataclasses.replace(
            fact, attribute=relation_key(entity.name, fact), phrasing=fact.phrasing or TRAIN_PHRASING
        )
        facts += [train] + heldout_phrasings(entity.name, fact)
    return dataclasses.replace(entity, facts=facts)
