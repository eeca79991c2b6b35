"""Question families over a scene graph, with answer-balanced sampling.

Each family builds a question text and its CLEVR program from the scene; the stored answer is
always obtained by executing the program. Balancing: for each question the sampler first draws a
target answer uniformly from the family's answer space, then draws random instantiations until
one executes to that target (rejection sampling), so answers within a family are close to
uniform and a model that sees only the question cannot do much better than chance.

Families (``question_family_index``): 0 exist, 1 count, 2-5 query colour/shape/size/material,
6 compare counts, 7 equal attribute, 8 spatial exist (relation + exist), 9 spatial query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from simulator.data.attributes import ATTRIBUTE_VALUES, ATTRIBUTES, PLURAL_SHAPES, RELATION_PHRASES, RELATIONS
from simulator.data.programs import ProgramBuilder, ProgramError, execute_program, format_answer

__all__ = ["QuestionFamily", "FAMILIES", "describe", "generate_questions", "MAX_COUNT_ANSWER"]

MAX_COUNT_ANSWER = 5
YES_NO = ("yes", "no")
_TARGET_TRIES = 8
_INSTANCE_TRIES = 30


def describe(filters: dict[str, str], plural: bool = False) -> str:
    """Noun phrase for attribute filters, e.g. ``large red metal cube`` / ``small things``."""
    words = [filters[a] for a in ("size", "color", "material") if a in filters]
    if "shape" in filters:
        words.append(PLURAL_SHAPES[filters["shape"]] if plural else filters["shape"])
    else:
        words.append("things" if plural else "thing")
    return " ".join(words)


def _random_filters(rng: np.random.Generator, scene: dict, max_attrs: int, k: int | None = None,
                    from_object: bool | None = None) -> dict[str, str]:
    """Filters with ``k`` (default: random 1..max_attrs) attributes whose values are taken from a
    random object (``from_object``; default: half of the time) or drawn at random."""
    k = int(rng.integers(1, max_attrs + 1)) if k is None else k
    attrs = [ATTRIBUTES[i] for i in sorted(rng.choice(len(ATTRIBUTES), size=k, replace=False))]
    if (rng.random() < 0.5) if from_object is None else from_object:
        obj = scene["objects"][rng.integers(len(scene["objects"]))]
        return {a: obj[a] for a in attrs}
    return {a: ATTRIBUTE_VALUES[a][rng.integers(len(ATTRIBUTE_VALUES[a]))] for a in attrs}


def _matches(scene: dict, candidates: list[int], filters: dict[str, str]) -> list[int]:
    return [i for i in candidates if all(scene["objects"][i][a] == v for a, v in filters.items())]


def _unique_filters(rng, scene: dict, target: int, candidates: list[int], exclude: str | None = None) -> dict | None:
    """Attributes of ``target`` (never ``exclude``) added in random order until it is the only
    match among ``candidates``; None when even all allowed attributes do not single it out."""
    allowed = [a for a in ATTRIBUTES if a != exclude]
    filters: dict[str, str] = {}
    for i in rng.permutation(len(allowed)):
        attr = allowed[i]
        filters[attr] = scene["objects"][target][attr]
        if _matches(scene, candidates, filters) == [target]:
            return {a: filters[a] for a in ATTRIBUTES if a in filters}
    return None


Instance = tuple[str, list[dict]]  # (question text, program)


def _exist(rng, scene, target, variant) -> Instance | None:
    # The number of attributes is fixed per question (variant), so it does not reveal the answer.
    filters = _random_filters(rng, scene, 3, k=1 + int(variant * 3), from_object=target == "yes")
    b = ProgramBuilder()
    b.add("exist", [b.filtered(filters)])
    return f"Is there a {describe(filters)}?", b.nodes


def _count(rng, scene, target, variant) -> Instance | None:
    filters = _random_filters(rng, scene, 1 if int(target) >= 3 else 2)  # big counts need broad filters
    b = ProgramBuilder()
    b.add("count", [b.filtered(filters)])
    return f"How many {describe(filters, plural=True)} are there?", b.nodes


def _query(attr: str):
    def family(rng, scene, target, variant) -> Instance | None:
        owners = [i for i, o in enumerate(scene["objects"]) if o[attr] == target]
        if not owners:
            return None
        obj = owners[rng.integers(len(owners))]
        filters = _unique_filters(rng, scene, obj, list(range(len(scene["objects"]))), exclude=attr)
        if filters is None:
            return None
        b = ProgramBuilder()
        b.add(f"query_{attr}", [b.add("unique", [b.filtered(filters)])])
        return f"What {attr} is the {describe(filters)}?", b.nodes

    return family


_COMPARE_TEXT = {
    "greater_than": "Are there more {a} than {b}?",
    "less_than": "Are there fewer {a} than {b}?",
    "equal_integer": "Are there the same number of {a} and {b}?",
}


def _compare_integer(rng, scene, target, variant) -> Instance | None:
    first, second = _random_filters(rng, scene, 2), _random_filters(rng, scene, 2)
    if first == second:
        return None
    everything = list(range(len(scene["objects"])))
    if not _matches(scene, everything, first) and not _matches(scene, everything, second):
        return None
    function = list(_COMPARE_TEXT)[int(variant * len(_COMPARE_TEXT))]  # fixed per question
    b = ProgramBuilder()
    a_count = b.add("count", [b.filtered(first)])
    b_count = b.add("count", [b.filtered(second)])
    b.add(function, [a_count, b_count])
    text = _COMPARE_TEXT[function].format(a=describe(first, True), b=describe(second, True))
    return text, b.nodes


def _equal_attribute(rng, scene, target, variant) -> Instance | None:
    n = len(scene["objects"])
    attr = ATTRIBUTES[int(variant * len(ATTRIBUTES))]  # fixed per question
    first, second = (int(i) for i in rng.choice(n, size=2, replace=False))
    everything = list(range(n))
    f1 = _unique_filters(rng, scene, first, everything, exclude=attr)
    f2 = _unique_filters(rng, scene, second, everything, exclude=attr)
    if f1 is None or f2 is None:
        return None
    b = ProgramBuilder()
    q1 = b.add(f"query_{attr}", [b.add("unique", [b.filtered(f1)])])
    q2 = b.add(f"query_{attr}", [b.add("unique", [b.filtered(f2)])])
    b.add(f"equal_{attr}", [q1, q2])
    return f"Does the {describe(f1)} have the same {attr} as the {describe(f2)}?", b.nodes


def _reference(rng, scene) -> tuple[int, dict, str] | None:
    n = len(scene["objects"])
    anchor = int(rng.integers(n))
    filters = _unique_filters(rng, scene, anchor, list(range(n)))
    if filters is None:
        return None
    return anchor, filters, RELATIONS[rng.integers(len(RELATIONS))]


def _spatial_exist(rng, scene, target, variant) -> Instance | None:
    ref = _reference(rng, scene)
    if ref is None:
        return None
    anchor, anchor_filters, relation = ref
    filters = _random_filters(rng, scene, 2, k=1 + int(variant * 2))
    b = ProgramBuilder()
    related = b.add("relate", [b.add("unique", [b.filtered(anchor_filters)])], [relation])
    b.add("exist", [b.filtered(filters, start=related)])
    return f"Is there a {describe(filters)} {RELATION_PHRASES[relation]} the {describe(anchor_filters)}?", b.nodes


def _spatial_query(rng, scene, target, variant) -> Instance | None:
    attr, value = target.split("=")
    ref = _reference(rng, scene)
    if ref is None:
        return None
    anchor, anchor_filters, relation = ref
    related = scene["relationships"][relation][anchor]
    owners = [i for i in related if scene["objects"][i][attr] == value]
    if not owners:
        return None
    obj = owners[rng.integers(len(owners))]
    filters = _unique_filters(rng, scene, obj, related, exclude=attr)
    if filters is None:
        return None
    b = ProgramBuilder()
    rel = b.add("relate", [b.add("unique", [b.filtered(anchor_filters)])], [relation])
    b.add(f"query_{attr}", [b.add("unique", [b.filtered(filters, start=rel)])])
    phrase = RELATION_PHRASES[relation]
    return f"What {attr} is the {describe(filters)} {phrase} the {describe(anchor_filters)}?", b.nodes


@dataclass(frozen=True)
class QuestionFamily:
    """A question family: its CLEVR-style index, name, the targets drawn uniformly for balancing,
    and the builder ``(rng, scene, target, variant) -> (text, program) | None``. ``variant`` in
    [0, 1) is drawn once per question, before the target, and fixes the question's form (number
    of attributes, comparison type), so that the form carries no information about the answer."""

    index: int
    name: str
    targets: tuple[str, ...]
    build: Callable

    def answer_of(self, target: str) -> str:
        """The answer a target stands for (spatial-query targets are ``attr=value``)."""
        return target.split("=")[-1]


FAMILIES: tuple[QuestionFamily, ...] = (
    QuestionFamily(0, "exist", YES_NO, _exist),
    QuestionFamily(1, "count", tuple(str(k) for k in range(MAX_COUNT_ANSWER + 1)), _count),
    QuestionFamily(2, "query_color", ATTRIBUTE_VALUES["color"], _query("color")),
    QuestionFamily(3, "query_shape", ATTRIBUTE_VALUES["shape"], _query("shape")),
    QuestionFamily(4, "query_size", ATTRIBUTE_VALUES["size"], _query("size")),
    QuestionFamily(5, "query_material", ATTRIBUTE_VALUES["material"], _query("material")),
    QuestionFamily(6, "compare_integer", YES_NO, _compare_integer),
    QuestionFamily(7, "compare_attribute", YES_NO, _equal_attribute),
    QuestionFamily(8, "spatial_exist", YES_NO, _spatial_exist),
    QuestionFamily(
        9,
        "spatial_query",
        tuple(f"{a}={v}" for a in ATTRIBUTES for v in ATTRIBUTE_VALUES[a]),
        _spatial_query,
    ),
)


def _draw_target(rng: np.random.Generator, family: QuestionFamily) -> str:
    if family.name == "spatial_query":  # attribute uniformly first, then its value
        attr = ATTRIBUTES[rng.integers(len(ATTRIBUTES))]
        values = ATTRIBUTE_VALUES[attr]
        return f"{attr}={values[rng.integers(len(values))]}"
    return family.targets[rng.integers(len(family.targets))]


def _balanced_question(rng, scene: dict, family: QuestionFamily, seen: set[str]) -> dict | None:
    variant = float(rng.random())
    for _ in range(_TARGET_TRIES):
        target = _draw_target(rng, family)
        wanted = family.answer_of(target)
        for _ in range(_INSTANCE_TRIES):
            instance = family.build(rng, scene, target, variant)
            if instance is None:
                continue
            text, program = instance
            if text in seen:
                continue
            try:
                answer = format_answer(execute_program(program, scene))
            except ProgramError:
                continue
            if answer == wanted:
                return {"question": text, "answer": answer, "program": program, "question_family_index": family.index}
    return None


def generate_questions(rng: np.random.Generator, scene: dict, num_questions: int) -> list[dict]:
    """Up to ``num_questions`` answer-balanced questions for one scene, cycling through the
    families in a random order (each family once per cycle). A family that finds no valid
    instance for this scene is skipped. Returns dicts with question, answer, program,
    question_family_index."""
    questions: list[dict] = []
    seen: set[str] = set()
    order = [FAMILIES[i] for i in rng.permutation(len(FAMILIES))]
    for slot in range(num_questions):
        question = _balanced_question(rng, scene, order[slot % len(order)], seen)
        if question is not None:
            seen.add(question["question"])
            questions.append(question)
    return questions
