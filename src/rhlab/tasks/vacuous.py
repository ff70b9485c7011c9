"""Tests that keep their meaning: found statically, with no test code run on the host.

A test means something only if some answer fails it. Loaders drop (datasets) or refuse (user
files) a test that no answer can fail (``vacuous_reason``):

- it compares the entry point's result with itself. HumanEval/33 checks ``candidate`` against the
  reference function, which has the candidate's own name, so ``tuple(sort_third(x)) ==
  tuple(sort_third(x))`` passes for every answer, even a stub that returns its input;
- it never calls the entry point (``assert True``, ``assert 1 == 1``);
- its condition is always true (a non-empty tuple such as ``assert (f(x), "msg")``, ``... or True``).

A test can also be weak without being vacuous: ``assert f([]) == []`` is passed by a stub that
returns its input. When the first visible tests of a dataset task are all that weak, the visible
set is free reward, so ``choose_visible`` picks visible tests that, together, fail every
``STUBS`` answer (predicted by ``stub_outcomes``, a small evaluator of literal-only asserts).
"""

from __future__ import annotations

import ast
import functools
import operator
from collections.abc import Callable, Iterable, Sequence

SELF_COMPARISON = "compares the entry point's result with itself"
NO_CALL = "never calls the entry point"
ALWAYS_TRUE = "its assertion is always true"

STUBS: dict[str, Callable[..., object]] = {
    "returns its input": lambda *args, **kwargs: args[0] if args else None,
    "returns None": lambda *args, **kwargs: None,
    "returns 0": lambda *args, **kwargs: 0,
    "returns 1": lambda *args, **kwargs: 1,
    "returns True": lambda *args, **kwargs: True,
    "returns False": lambda *args, **kwargs: False,
    "returns ''": lambda *args, **kwargs: "",
    "returns []": lambda *args, **kwargs: [],
    "returns ()": lambda *args, **kwargs: (),
    "returns {}": lambda *args, **kwargs: {},
}
"""Answers that compute nothing: a visible test set some of these pass is free reward."""


@functools.lru_cache(maxsize=256)  # a test is checked by two functions in a row: parse it once
def _parse(test: str) -> ast.Module | None:
    """The test's tree (shared between the checks below, which never modify it), None if it does not parse."""
    try:
        return ast.parse(test)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _same(a: ast.AST, b: ast.AST) -> bool:
    return type(a) is type(b) and ast.dump(a) == ast.dump(b)


_REFLEXIVE = (ast.Eq, ast.Is, ast.LtE, ast.GtE)


def _always_true(node: ast.expr) -> bool:
    """Whether ``node`` is true whatever the names in it hold (sound, not complete)."""
    if isinstance(node, ast.Constant):
        return bool(node.value)
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return bool(node.elts)
    if isinstance(node, ast.Dict):
        return bool(node.keys)
    if isinstance(node, ast.BoolOp):
        check = any if isinstance(node.op, ast.Or) else all
        return check(_always_true(v) for v in node.values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return _always_false(node.operand)
    if isinstance(node, ast.Compare):
        sides = [node.left, *node.comparators]
        return all(isinstance(op, _REFLEXIVE) and _same(a, b) for op, a, b in zip(node.ops, sides, sides[1:]))
    return False


def _always_false(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return not node.value
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return not node.elts
    if isinstance(node, ast.Dict):
        return not node.keys
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return _always_true(node.operand)
    return False


def vacuous_reason(test: str, entry_point: str) -> str | None:
    """Why no answer can fail ``test`` (None when one can, or when the test does not parse)."""
    tree = _parse(test)
    return None if tree is None else tree_vacuous_reason(tree, entry_point)


def tree_vacuous_reason(tree: ast.AST, entry_point: str) -> str | None:
    """``vacuous_reason`` of an already parsed test."""
    nodes = list(ast.walk(tree))
    if not any(isinstance(n, ast.Name) and n.id == entry_point for n in nodes):
        return NO_CALL
    asserts = [n for n in nodes if isinstance(n, ast.Assert)]
    if not asserts or not all(_always_true(a.test) for a in asserts):
        return None
    compares = any(isinstance(a.test, ast.Compare) for a in asserts)
    return SELF_COMPARISON if compares else ALWAYS_TRUE


def meaningful_tests(tests: Sequence[str], entry_point: str) -> tuple[list[str], list[str]]:
    """(the tests some answer can fail, ``"REASON: TEST"`` for each one dropped)."""
    kept, dropped = [], []
    for test in tests:
        reason = vacuous_reason(test, entry_point)
        if reason is None:
            kept.append(test)
        else:
            dropped.append(f"{reason}: {test[:200]}")
    return kept, dropped


# --- predicting what a stub answer scores ---------------------------------------------------------


class _Unknown(Exception):
    """The expression is outside what the evaluator handles: nothing is predicted."""


_WRAPPERS: dict[str, Callable[[object], object]] = {
    "tuple": tuple,
    "list": list,
    "set": set,
    "sorted": sorted,
    "abs": abs,
    "len": len,
    "str": str,
    "bool": bool,
    "round": round,
    "int": int,
    "float": float,
}
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _number(value: object) -> bool:
    return type(value) in (int, float, bool)


class _Evaluator:
    """Evaluates literal-only expressions with the entry point bound to a stub; anything else is ``_Unknown``."""

    def __init__(self, entry_point: str, stub: Callable[..., object]) -> None:
        self.entry_point, self.stub = entry_point, stub

    def value(self, node: ast.expr) -> object:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Tuple | ast.List | ast.Set) and not any(isinstance(e, ast.Starred) for e in node.elts):
            items = [self.value(e) for e in node.elts]
            return tuple(items) if isinstance(node, ast.Tuple) else items if isinstance(node, ast.List) else set(items)
        if isinstance(node, ast.Dict) and None not in node.keys:
            return {self.value(k): self.value(v) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
        if isinstance(node, ast.UnaryOp):
            operand = self.value(node.operand)
            if isinstance(node.op, ast.Not):
                return not operand
            if isinstance(node.op, ast.USub | ast.UAdd) and _number(operand):
                return -operand if isinstance(node.op, ast.USub) else +operand  # type: ignore[operator]
            raise _Unknown
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            left, right = self.value(node.left), self.value(node.right)
            if isinstance(node.op, ast.Mult) and not (_number(left) and _number(right)):
                factor, sequence = (left, right) if _number(left) else (right, left)
                size = len(sequence) if isinstance(sequence, str | list | tuple) else None
                if not _number(factor) or size is None or size * abs(factor) > 100_000:  # type: ignore[arg-type]
                    raise _Unknown  # repeating a sequence: keep the host's memory out of the data's reach
            return _ARITHMETIC[type(node.op)](left, right)  # + - / cannot blow up; a TypeError fails the stub
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            args = [self.value(a) for a in node.args if not isinstance(a, ast.Starred)]
            if len(args) != len(node.args):
                raise _Unknown
            if node.func.id == self.entry_point:
                return self.stub(*args)
            if node.func.id in _WRAPPERS and len(args) == 1:
                return _WRAPPERS[node.func.id](args[0])
            raise _Unknown
        if isinstance(node, ast.BoolOp):
            result: object = None
            for operand in node.values:
                result = self.value(operand)
                if bool(result) is isinstance(node.op, ast.Or):
                    return result
            return result
        if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            left = self.value(node.left)
            for op, comparator in zip(node.ops, node.comparators):
                right = self.value(comparator)
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        raise _Unknown


def stub_outcomes(test: str, entry_point: str, stubs: Iterable[str] = tuple(STUBS)) -> dict[str, bool] | None:
    """``{stub: passes}`` for a one-assert test of literals and entry-point calls, else None (unknown)."""
    tree = _parse(test)
    if tree is None or len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return None
    outcomes = {}
    for name in stubs:
        try:
            outcomes[name] = bool(_Evaluator(entry_point, STUBS[name]).value(tree.body[0].test))
        except _Unknown:
            return None
        except (ArithmeticError, TypeError, ValueError, AttributeError, KeyError, IndexError):
            outcomes[name] = False  # the real test would raise: the stub fails it
        except (RecursionError, MemoryError):
            return None
    return outcomes


def stubs_passing(tests: Sequence[str], entry_point: str) -> set[str]:
    """The ``STUBS`` predicted to pass every one of ``tests`` (a test that cannot be predicted passes none)."""
    passing = set(STUBS)
    for test in tests:
        if not passing:
            break
        outcomes = stub_outcomes(test, entry_point, sorted(passing))
        passing = {name for name, ok in outcomes.items() if ok} if outcomes is not None else set()
    return passing


def choose_visible(tests: Sequence[str], n_visible: int, entry_point: str) -> tuple[list[str], list[str]]:
    """Split ``tests`` into visible and held-out so that no stub is predicted to pass the visible ones.

    The first ``n_visible`` stay visible when they already fail every stub (the usual case).
    Otherwise tests are picked greedily by how many still-passing stubs they fail, and when
    ``n_visible`` is not enough the visible set may grow to 3 while at least one test stays held out.
    Order within each side is the dataset's.
    """
    n_visible = max(1, min(n_visible, len(tests)))
    if not stubs_passing(tests[:n_visible], entry_point):
        return list(tests[:n_visible]), list(tests[n_visible:])
    outcomes = [stub_outcomes(t, entry_point) for t in tests]
    fails = [set(STUBS) - {n for n, ok in o.items() if ok} if o is not None else set() for o in outcomes]
    limit = max(n_visible, min(3, len(tests) - 1))
    chosen: list[int] = []
    left = set(STUBS)
    while left and len(chosen) < limit:
        best = max((i for i in range(len(tests)) if i not in chosen), key=lambda i: len(fails[i] & left), default=None)
        if best is None or not fails[best] & left:
            break
        chosen.append(best)
        left -= fails[best]
    for i in range(len(tests)):  # fill up to n_visible in dataset order
        if len(chosen) >= n_visible:
            break
        if i not in chosen:
            chosen.append(i)
    keep = sorted(chosen)
    return [tests[i] for i in keep], [t for i, t in enumerate(tests) if i not in keep]


__all__ = [
    "ALWAYS_TRUE",
    "NO_CALL",
    "SELF_COMPARISON",
    "STUBS",
    "choose_visible",
    "meaningful_tests",
    "stub_outcomes",
    "stubs_passing",
    "tree_vacuous_reason",
    "vacuous_reason",
]
