"""The cleaner: HTML, Windows-1252 control characters, unicode, URLs, negation, odd inputs."""

from __future__ import annotations

import re

import nltk
import pytest
from nltk.sentiment.util import mark_negation as nltk_mark_negation

from pyfunc.cleaning import TextCleaner, clean, normalise, tokenize


def test_html_tags_become_spaces_and_entities_are_unescaped():
    assert clean("Great film.<br /><br />Loved it &amp; the <i>music</i>") == (
        "great film loved it the music"
    )


def test_a_less_than_sign_does_not_swallow_the_text_after_it():
    assert clean("3 < 5 stars, but the ending > the start") == "3 5 stars but the ending the start"


def test_windows_1252_control_characters_become_the_punctuation_they_stand_for():
    # U+0091/U+0092 are curly single quotes, U+0085 an ellipsis, U+0096/U+0097 dashes.
    text = "\x91Brilliant\x92 \x96 it\x92s the best\x85 really\x97 and \x93fun\x94"
    assert normalise(text) == "'brilliant'  -  it's the best ...  really -  and \"fun\""
    assert tokenize(text) == ["brilliant", "it's", "the", "best", "really", "and", "fun"]


def test_typographic_apostrophes_keep_contractions_whole():
    assert tokenize("I don’t think it´s bad") == ["i", "don't", "think", "it's", "bad"]


def test_unicode_is_normalised_accents_dropped_other_scripts_kept():
    assert tokenize("Café CRÈME ｇｒｅａｔ") == ["cafe", "creme", "great"]
    assert tokenize("Отличный фильм! 素晴らしい映画") == [
        "отличныи",
        "фильм",
        "!",
        "素晴らしい映画",
    ]


def test_non_english_text_is_tokenised_not_dropped():
    assert tokenize("Ce film est magnifique ! ¿Qué tal?") == [
        "ce", "film", "est", "magnifique", "!", "que", "tal", "?",
    ]  # fmt: skip


def test_urls_become_one_token():
    assert tokenize("See https://www.imdb.com/title/tt0111161/ or www.example.org now") == [
        "see", "url", "or", "url", "now",
    ]  # fmt: skip


def test_keeps_exclamation_question_marks_and_one_letter_words():
    assert tokenize("I saw a film?! It was OK...") == [
        "i", "saw", "a", "film", "?", "!", "it", "was", "ok",
    ]  # fmt: skip


def test_no_stop_words_are_removed():
    assert tokenize("It was not very good, no.") == ["it", "was", "not", "very", "good", "no"]


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "<br /><br />", "...", "\x85"])
def test_text_without_words_cleans_to_an_empty_string(text):
    assert clean(text) == ""


def test_very_long_input_is_cleaned_whole():
    text = "a great film! " * 100_000  # 1.4 million characters
    tokens = tokenize(text)
    assert len(tokens) == 400_000
    assert tokens[:4] == ["a", "great", "film", "!"]


def test_negation_marks_the_scope_up_to_clause_punctuation():
    assert tokenize("I didn't like this movie. It was bad!", negation=True) == [
        "i", "didn't", "like_NEG", "this_NEG", "movie_NEG", "it", "was", "bad", "!",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [
        "I didn't like this movie. It was bad.",
        "Never again: not good, not funny; no stars! Really.",
        "It is not a film that I would not see again? Maybe.",
        "Nothing works, nowhere to hide, and I can't say it isn't dull",
        "a 'never was' musical: did'not and _not_ are no negations here",
        "This is good. Don't miss it",
    ],
)
def test_negation_matches_nltk_mark_negation(text):
    # NLTK marks a list of tokens, ours marks the string. Given NLTK the same tokens (plus the
    # clause punctuation that ends a scope), both must mark exactly the same words.
    with_clauses = re.findall(r"[^\W_]+(?:'[^\W_]+)*|[!?.:;]", normalise(text))
    expected = [t for t in nltk_mark_negation(with_clauses) if t not in {".", ":", ";"}]
    assert tokenize(text, negation=True) == expected
    assert any(t.endswith("_NEG") for t in expected)


def test_cleaning_never_downloads_nltk_data(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("nltk.download must never be called")

    monkeypatch.setattr(nltk, "download", refuse)
    assert TextCleaner(negation=True).fit_transform(["Not bad at all.", "Great!"]) == [
        "not bad_NEG at_NEG all_NEG",
        "great !",
    ]
