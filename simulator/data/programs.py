"""Executor of CLEVR functional programs over a scene graph.

A program is CLEVR's list of nodes ``{"inputs": [node indices], "function": name,
"value_inputs": [strings]}`` evaluated in order; the last node's value is the answer. Supported:
``scene``, ``filter_<attr>``, ``unique``, ``relate``, ``union``, ``intersect``, ``count``,
``exist``, ``query_<attr>``, ``same_<attr>``, ``equal_<attr>``, ``equal_integer``,
``greater_than``, ``less_than`` (the CLEVR v1.0 function set). Answers are rendered as CLEVR does:
booleans as "yes"/"no", integers as digits, attribute values as words.
"""

from __future__ import annotations

from simulator.data.attributes import ATTRIBUTES

__all__ = ["ProgramError", "execute_program", "format_answer", "referred_objects", "ProgramBuilder"]


class ProgramError(ValueError):
    """The program is malformed or undefined on this scene (e.g. ``unique`` of a non-singleton)."""


def format_answer(value) -> str:
    """CLEVR answer string of a program value."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    raise ProgramError(f"program ends in a non-answer value {value!r}")


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ProgramError(message)


def _node_value(function: str, args: list, values: list, scene: dict):
    objects = scene["objects"]
    if function == "scene":
        return list(range(len(objects)))
    head, _, attr = function.partition("_")
    if head == "filter" and attr in ATTRIBUTES:
        (objs,), (value,) = args, values
        return [i for i in objs if objects[i][attr] == value]
    if head == "query" and attr in ATTRIBUTES:
        (obj,) = args
        _expect(isinstance(obj, int) and not isinstance(obj, bool), f"{function} needs one object")
        return objects[obj][attr]
    if head == "same" and attr in ATTRIBUTES:
        (obj,) = args
        return [i for i in range(len(objects)) if i != obj and objects[i][attr] == objects[obj][attr]]
    if head == "equal" and attr in ATTRIBUTES:
        first, second = args
        return first == second
    if function == "unique":
        (objs,) = args
        _expect(len(objs) == 1, f"unique of {len(objs)} objects")
        return objs[0]
    if function == "relate":
        (obj,), (relation,) = args, values
        _expect(relation in scene["relationships"], f"unknown relation {relation!r}")
        return list(scene["relationships"][relation][obj])
    if function == "union":
        return sorted(set(args[0]) | set(args[1]))
    if function == "intersect":
        return sorted(set(args[0]) & set(args[1]))
    if function == "count":
        return len(args[0])
    if function == "exist":
        return len(args[0]) > 0
    if function == "equal_integer":
        return args[0] == args[1]
    if function == "greater_than":
        return args[0] > args[1]
    if function == "less_than":
        return args[0] < args[1]
    raise ProgramError(f"unknown function {function!r}")


def execute_program(program: list[dict], scene: dict):
    """Value of the last node of ``program`` on ``scene`` (raw: list, int, bool or str)."""
    return _node_values(program, scene)[-1]


# Functions whose argument is what a question is about: the object it queries or compares, the set it
# counts or tests, the anchor of a relation or of a "same <attribute> as" phrase.
_LOOKING_FUNCTIONS = ("query_", "same_", "count", "exist", "relate")


def referred_objects(program: list[dict], scene: dict) -> list[int]:
    """Sorted indices of the scene objects the question looks at: the arguments of its ``query_*``,
    ``same_*``, ``count``, ``exist`` and ``relate`` nodes (e.g. "What color is the cube left of the
    sphere?" -> the sphere and the cube; "Are there any cylinders?" -> every cylinder, or none)."""
    values = _node_values(program, scene)
    referred: set[int] = set()
    for node in program:
        if node.get("function", node.get("type", "")).startswith(_LOOKING_FUNCTIONS):
            for k in node.get("inputs", []):
                argument = values[k]
                if isinstance(argument, list):
                    referred.update(argument)
                elif isinstance(argument, int) and not isinstance(argument, bool):
                    referred.add(argument)
    return sorted(referred)


def _node_values(program: list[dict], scene: dict) -> list:
    """The value of every node of ``program`` on ``scene``, in order."""
    _expect(len(program) > 0, "empty program")
    results: list = []
    for index, node in enumerate(program):
        function = node.get("function", node.get("type"))  # pre-1.0 CLEVR used "type"
        inputs = node.get("inputs", [])
        _expect(all(0 <= k < index for k in inputs), f"node {index} reads a later node")
        try:
            results.append(_node_value(function, [results[k] for k in inputs], node.get("value_inputs", []), scene))
        except (ValueError, TypeError, IndexError, KeyError) as err:
            if isinstance(err, ProgramError):
                raise
            raise ProgramError(f"node {index} ({function}): {err}") from err
    return results


class ProgramBuilder:
    """Appends CLEVR nodes and returns their indices: ``b.add("filter_color", [k], ["red"])``."""

    def __init__(self) -> None:
        self.nodes: list[dict] = []

    def add(self, function: str, inputs: list[int] | None = None, values: list[str] | None = None) -> int:
        self.nodes.append({"inputs": list(inputs or []), "function": function, "value_inputs": list(values or [])})
        return len(self.nodes) - 1

    def filtered(self, filters: dict[str, str], start: int | None = None) -> int:
        """Nodes for ``scene -> filter_*`` (in spoken attribute order); returns the last index."""
        node = self.add("scene") if start is None else start
        for attr in ATTRIBUTES:
            if attr in filters:
                node = self.add(f"filter_{attr}", [node], [filters[attr]])
        return node
