"""The answer matcher behind every recall number: a whole-word prefix of the continuation, not any prefix.

A prefix match would count "Towering" as knowing "Tower", inflating recall for models that merely
start a longer word; these cases pin the word boundary, the case and leading-punctuation rules."""

import pytest

from sae_unlearn.metrics.recall import answer_matches


@pytest.mark.parametrize(
    "continuation,answer",
    [
        ("Tower", "Tower"),
        ("Tower.", "Tower"),
        ("Tower of London", "Tower"),
        ("tower", "Tower"),
        ("TOWER, then", "tower"),
        (" Tower", "Tower"),
        ('\n"Tower"', "Tower"),
        ("United Kingdom and", "United Kingdom"),
        ("1969 was", "1969"),
    ],
)
def test_answer_followed_by_a_non_word_character_matches(continuation, answer):
    assert answer_matches(continuation, answer)


@pytest.mark.parametrize(
    "continuation,answer",
    [
        ("Towering", "Tower"),
        ("Towers", "Tower"),
        ("Tower_2", "Tower"),
        ("19690", "1969"),
        ("United Kingdoms", "United Kingdom"),
        ("United", "United Kingdom"),  # a continuation cut short is not the answer
        ("the Tower", "Tower"),  # the answer must come first
        ("Tower", ""),
        ("Tower", " . "),  # nothing left after normalising
        ("", ""),
    ],
)
def test_longer_word_other_start_or_empty_answer_does_not_match(continuation, answer):
    assert not answer_matches(continuation, answer)
