"""Question/context pairs for checking exports: the bundled hand-written ones plus generated ones.

The generated pairs are written from templates and invented names with a fixed seed: short,
factual, SQuAD-like paragraphs (one window each) with questions whose answers are in the text.
They are original text made here, so they carry no licence of any dataset. Enough of them (200
by default) that one borderline question cannot decide whether a quantized variant passes.

The default calibration set of static int8 is made the same way, with another seed, and with
contexts of several joined paragraphs so that windows are as long as real ones.
"""

from __future__ import annotations

import json
import random
from importlib import resources

__all__ = ["calibration_pairs", "check_pairs", "generated_pairs", "tuning_pairs", "validation_pairs"]

_FIRST = [
    "Margaret",
    "Tomas",
    "Aiko",
    "Rahul",
    "Ingrid",
    "Kwame",
    "Lucia",
    "Dmitri",
    "Amara",
    "Henrik",
    "Sofia",
    "Omar",
]
_LAST = ["Ellison", "Varga", "Nakamura", "Mehta", "Lindqvist", "Mensah", "Ferreira", "Volkov", "Okafor", "Brandt"]
_PLACES = ["Harlow", "Port Ainsley", "Kestrel Bay", "Montclair", "Ostrava", "Valdemar", "Sunmere", "Lakeshore"]
_THINGS = [
    ("bridge", "built", "spans", "metres across the river"),
    ("library", "founded", "holds", "thousand books"),
    ("observatory", "opened", "has", "telescopes on its roof"),
    ("railway", "completed", "runs for", "kilometres through the valley"),
    ("museum", "established", "displays", "paintings from the old guilds"),
    ("hospital", "opened", "has", "beds in its east wing"),
    ("canal", "dug", "stretches", "kilometres to the sea"),
    ("school", "founded", "teaches", "pupils every year"),
]
_MATERIALS = ["stone", "steel", "brick", "timber", "glass", "concrete"]
_REASONS = [
    "the old ferry could no longer carry the traffic",
    "the town council wanted a place for public lectures",
    "merchants needed a faster route to the harbour",
    "a fire had destroyed the earlier building",
    "the population had doubled in twenty years",
]


def validation_pairs() -> list[tuple[str, str]]:
    """The bundled hand-written pairs (also the default questions of `onnxqa bench`)."""
    text = resources.files("onnxqa.export").joinpath("validation_pairs.json").read_text(encoding="utf-8")
    return [(p["question"], p["context"]) for p in json.loads(text)]


def generated_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` generated pairs, the same for the same ``n`` and ``seed``."""
    return _generated(n, random.Random(seed))


def _generated(n: int, rng: random.Random) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n:
        thing, verb, measure_verb, unit = rng.choice(_THINGS)
        person = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        funder = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        place = rng.choice(_PLACES)
        year = rng.randint(1820, 1990)
        size = rng.randint(12, 950)
        material = rng.choice(_MATERIALS)
        reason = rng.choice(_REASONS)
        name = f"The {place} {thing.title()}"
        sentences = [
            f"{name} was {verb} in {year} by {person}.",
            f"It {measure_verb} {size} {unit} and is made mostly of {material}.",
            f"The project was paid for by {funder}, because {reason}.",
            f"Today the {thing} is one of the best known sights of {place}.",
        ]
        rng.shuffle(sentences[1:])
        context = " ".join(sentences)
        questions = [
            f"Who {verb} the {thing} in {place}?",
            f"In which year was the {thing} {verb}?",
            f"What is the {thing} made of?",
            f"Who paid for the {thing}?",
            f"Why was the {thing} {verb}?",
            f"How much does the {thing} have or measure?",
        ]
        pairs.append((rng.choice(questions), context))
    return pairs


def check_pairs(n_generated: int) -> list[tuple[str, str]]:
    """The bundled pairs followed by ``n_generated`` generated ones."""
    return validation_pairs() + generated_pairs(n_generated)


def _joined(n: int, rng: random.Random, fewest: int, most: int) -> list[tuple[str, str]]:
    """``n`` pairs whose contexts join ``fewest`` to ``most`` generated paragraphs, the question
    asked of one of them."""
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n:
        paragraphs = _generated(rng.randint(fewest, most), rng)
        pairs.append((rng.choice(paragraphs)[0], " ".join(c for _, c in paragraphs)))
    return pairs


def calibration_pairs(n: int, seed: int = 1) -> list[tuple[str, str]]:
    """``n`` generated pairs whose contexts join 2 to 12 paragraphs (one to two 384-token windows),
    the bundled hand-written pairs first: the default calibration set of static int8."""
    pairs = validation_pairs()[:n]
    return pairs + _joined(n - len(pairs), random.Random(seed), 2, 12)


def tuning_pairs(n: int = 32, seed: int = 2) -> list[tuple[str, str]]:
    """``n`` generated pairs whose contexts join 1 to 4 paragraphs: one window each, of about 70 to
    280 tokens, spread like real questions' (SQuAD 2.0 dev's first 200 with BERT's tokenizer: mean
    about 160 tokens, 10th to 90th percentile about 80 to 260). What ``onnxqa tune`` measures by
    default: how many windows per call pay off depends on how unequal their lengths are, and
    one-paragraph pairs all have about 77."""
    return _joined(n, random.Random(seed), 1, 4)
