"""CLEVR program executor on a hand-made scene."""

from __future__ import annotations

import pytest

from simulator.data.programs import ProgramError, execute_program, format_answer, referred_objects
from simulator.data.questions import describe

SCENE = {
    "objects": [
        {"shape": "cube", "color": "red", "size": "large", "material": "metal"},
        {"shape": "sphere", "color": "blue", "size": "small", "material": "rubber"},
        {"shape": "cube", "color": "blue", "size": "small", "material": "rubber"},
    ],
    # object 0 is leftmost, then 1, then 2; depth order 2 (front), 0, 1 (behind)
    "relationships": {
        "left": [[], [0], [0, 1]],
        "right": [[1, 2], [2], []],
        "front": [[2], [0, 2], []],
        "behind": [[1], [], [0, 1]],
    },
}


def node(function, inputs=(), values=()):
    return {"inputs": list(inputs), "function": function, "value_inputs": list(values)}


def test_count_query_relate_compare():
    count_cubes = [node("scene"), node("filter_shape", [0], ["cube"]), node("count", [1])]
    assert format_answer(execute_program(count_cubes, SCENE)) == "2"
    color_right_of_sphere = [node("scene"), node("filter_shape", [0], ["sphere"]), node("unique", [1]),
                             node("relate", [2], ["right"]), node("unique", [3]), node("query_color", [4])]
    assert format_answer(execute_program(color_right_of_sphere, SCENE)) == "blue"
    more_blue_than_metal = [node("scene"), node("filter_color", [0], ["blue"]), node("count", [1]),
                            node("scene"), node("filter_material", [3], ["metal"]), node("count", [4]),
                            node("greater_than", [2, 5])]
    assert format_answer(execute_program(more_blue_than_metal, SCENE)) == "yes"
    same_size = [node("scene"), node("filter_shape", [0], ["sphere"]), node("unique", [1]), node("query_size", [2]),
                 node("scene"), node("filter_color", [4], ["red"]), node("unique", [5]), node("query_size", [6]),
                 node("equal_size", [3, 7])]
    assert format_answer(execute_program(same_size, SCENE)) == "no"


def test_referred_objects_are_what_the_question_looks_at():
    color_right_of_sphere = [node("scene"), node("filter_shape", [0], ["sphere"]), node("unique", [1]),
                             node("relate", [2], ["right"]), node("unique", [3]), node("query_color", [4])]
    assert referred_objects(color_right_of_sphere, SCENE) == [1, 2]  # the anchor sphere and the queried cube
    count_cubes = [node("scene"), node("filter_shape", [0], ["cube"]), node("count", [1])]
    assert referred_objects(count_cubes, SCENE) == [0, 2]
    any_green = [node("scene"), node("filter_color", [0], ["green"]), node("exist", [1])]
    assert referred_objects(any_green, SCENE) == []  # nothing to look at: the answer is "no"
    same_color_as_red = [node("scene"), node("filter_color", [0], ["red"]), node("unique", [1]),
                         node("same_color", [2]), node("exist", [3])]
    assert referred_objects(same_color_as_red, SCENE) == [0]
    same_color_as_sphere = same_color_as_red[:1] + [node("filter_shape", [0], ["sphere"])] + same_color_as_red[2:]
    assert referred_objects(same_color_as_sphere, SCENE) == [1, 2]  # the sphere and the other blue object


def test_undefined_programs_raise():
    with pytest.raises(ProgramError, match="unique of 2"):
        execute_program([node("scene"), node("filter_shape", [0], ["cube"]), node("unique", [1])], SCENE)
    with pytest.raises(ProgramError, match="unknown function"):
        execute_program([node("scene"), node("teleport", [0])], SCENE)
    with pytest.raises(ProgramError):
        execute_program([node("count", [1]), node("scene")], SCENE)


def test_describe():
    assert describe({"size": "large", "color": "red", "material": "metal", "shape": "cube"}) == "large red metal cube"
    assert describe({"color": "red"}, plural=True) == "red things"
