"""LiveCodeBench code generation: ``question_id``, ``question_title``, ``question_content``, ``starter_code``,
``public_test_cases``, ``private_test_cases``, ``metadata``, ``difficulty``.

``public_test_cases`` is a JSON string: a list of ``{"input", "output", "testtype"}`` with testtype
``stdin`` (whole input/output texts) or ``functional`` (one JSON value per argument, one per line;
the output is one JSON value; the function is ``metadata.func_name``; a LeetCode method of
``class Solution`` is asked for as a plain function, see ``rhlab.tasks.stdin.method_as_function``).
``private_test_cases`` is the same list, either as plain JSON or compressed: base64 of zlib of a
*pickle* of the JSON string.

The pickle is never trusted: ``restricted_unpickle`` refuses every class lookup, so only plain
data (str, bytes, numbers, lists, dicts) can come out of it, and anything else is a clear error.
Plain data can still be a bomb: a pickle that reuses memo entries builds a shared-reference DAG,
so a few hundred bytes describe a list whose tree has 2**30 leaves, and every later walk of it
(``str``, ``json``, ``repr``) is exponential. So the pickle is refused when it has too many opcodes
(each makes at most one object), when its data contains a cycle, or when the data *as a tree*,
the size any re-encoding would write, exceeds ``MAX_EXPANDED``. The sizes are counted once per
distinct object, so refusing costs time linear in the pickle, not in the tree.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import pickle
import pickletools
import zlib

from rhlab.tasks.formats.common import json_field, make_task, original_id, stdin_pairs, text_field
from rhlab.tasks.formats.rows import RowError
from rhlab.tasks.schema import Task
from rhlab.tasks.stdin import CONTRACT, ENTRY_POINT, SIGNATURE, ConversionLimits, call_test, method_as_function

NAME = "livecodebench"
MAX_DECOMPRESSED = 256 * 2**20
MAX_PICKLE_OPS = 2_000_000
"""Opcodes a private-tests pickle may have: the real ones pickle one JSON string (a handful)."""
MAX_EXPANDED = MAX_DECOMPRESSED
"""Size of the unpickled data as a tree (string characters plus one per value) that is accepted."""


class _PlainDataUnpickler(pickle.Unpickler):
    """Refuses every global lookup: no class, function or module can be named by the data."""

    def find_class(self, module: str, name: str) -> object:
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: only plain data is accepted")


def _count_ops(data: bytes) -> None:
    """Refuse a pickle with more than ``MAX_PICKLE_OPS`` opcodes before building any object."""
    count = 0
    try:
        for count, _ in enumerate(pickletools.genops(data), 1):
            if count > MAX_PICKLE_OPS:
                break
    except (ValueError, EOFError, UnicodeDecodeError) as exc:
        raise RowError(f"private_test_cases: not a readable pickle ({type(exc).__name__})") from None
    if count > MAX_PICKLE_OPS:
        raise RowError(f"private_test_cases: the pickle has more than {MAX_PICKLE_OPS} opcodes")


_LEAVES = (str, bytes, bytearray, int, float, complex, bool, type(None))


def _children(value: object) -> tuple | list | None:
    if isinstance(value, dict):
        return [*value.keys(), *value.values()]
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(value)
    return None


def expanded_size(root: object, budget: int = MAX_EXPANDED) -> int:
    """The size of ``root`` as a tree, counting shared parts at every place they occur.

    A ``RowError`` once it exceeds ``budget``, or when the data refers to itself (a cycle). Each
    distinct object is measured once and the walk is iterative, so a shared-reference DAG of
    depth 30 (a 2**30-leaf tree) or a list nested a million deep is refused in linear time.
    """
    sizes: dict[int, int] = {}
    open_: set[int] = set()  # containers whose subtree is being measured: meeting one again is a cycle
    stack: list[tuple[object, bool]] = [(root, False)]
    while stack:
        value, finished = stack.pop()
        key = id(value)
        if finished:
            open_.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(value))  # type: ignore[union-attr]
            if total > budget:
                raise RowError(
                    f"private_test_cases: the unpickled data expands to more than {budget} values "
                    "and characters (a pickle that reuses shared references)"
                )
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in open_:
            raise RowError("private_test_cases: the unpickled data contains itself (a reference cycle)")
        children = _children(value)
        if children is None:
            if not isinstance(value, _LEAVES):
                raise RowError(f"private_test_cases: unexpected {type(value).__name__} in the unpickled data")
            sizes[key] = 1 + (len(value) if isinstance(value, str | bytes | bytearray) else 0)
            continue
        open_.add(key)
        stack.append((value, True))
        stack.extend((child, False) for child in children)
    return sizes[id(root)]


def restricted_unpickle(data: bytes) -> object:
    """Unpickle ``data`` allowing plain builtin data of bounded expanded size only (a ``RowError`` otherwise)."""
    _count_ops(data)
    try:
        value = _PlainDataUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise RowError(f"private_test_cases: {exc}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as exc:
        raise RowError(f"private_test_cases: not a readable pickle ({type(exc).__name__})") from None
    expanded_size(value)
    return value


def _inflate(value: str) -> object:
    """base64 -> zlib (bounded) -> restricted unpickle -> JSON, each step with its own error."""
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(base64.b64decode(value.encode("ascii"), validate=False), MAX_DECOMPRESSED)
    except (binascii.Error, ValueError, zlib.error) as exc:
        raise RowError(f"private_test_cases is neither JSON nor base64/zlib data ({exc})") from None
    if inflater.unconsumed_tail:
        raise RowError(f"private_test_cases decompresses to more than {MAX_DECOMPRESSED} bytes")
    decoded = restricted_unpickle(raw)
    if isinstance(decoded, bytes):
        decoded = decoded.decode("utf-8", "replace")
    if isinstance(decoded, str):
        try:
            decoded = json.loads(decoded)
        except json.JSONDecodeError as exc:
            raise RowError(f"private_test_cases: the unpickled text is not JSON ({exc.msg})") from None
    return decoded


def decode_private(value: object) -> list:
    """The private test list from plain JSON or the compressed base64/zlib/pickle form."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if not isinstance(value, str):
        raise RowError(f"private_test_cases should be text, got {type(value).__name__}")
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError:
        decoded = None
    if decoded is None:
        decoded = _inflate(value)
    if not isinstance(decoded, list):
        raise RowError("private_test_cases should decode to a list of test cases")
    return decoded


def _cases(cases: object, where: str) -> list[dict]:
    if not isinstance(cases, list) or not all(isinstance(c, dict) for c in cases):
        raise RowError(f"{where} should be a list of {{input, output, testtype}} objects")
    return cases


def _functional(cases: list[dict], call: str, limits: ConversionLimits) -> list[str]:
    tests = []
    for case in cases[: limits.max_visible + limits.max_heldout]:
        try:
            args = [json.loads(line) for line in str(case.get("input", "")).split("\n") if line.strip()]
            expected = json.loads(str(case.get("output", "")))
        except json.JSONDecodeError:
            continue
        test = call_test(call, args, expected)
        if test is not None and len(test) <= limits.max_test_chars:
            tests.append(test)
    return tests


def convert(row: dict, limits: ConversionLimits) -> Task:
    task_id = original_id(row, "question_id")
    content = text_field(row, "question_content")
    title = text_field(row, "question_title", required=False)
    statement = f"{title}\n\n{content}" if title else content
    public = _cases(json_field(row, "public_test_cases", default=[]), "public_test_cases")
    private = _cases(decode_private(row.get("private_test_cases")), "private_test_cases")
    kinds = {c.get("testtype") for c in public + private}
    difficulty = str(row.get("difficulty") or "").lower() or None
    difficulty = difficulty if difficulty in ("easy", "medium", "hard") else None
    tags = [f"platform:{row['platform']}"] if row.get("platform") else []
    if kinds <= {"stdin"}:
        keep = limits.max_visible + limits.max_heldout
        pub = stdin_pairs([c.get("input") for c in public], [c.get("output") for c in public], limits, keep)
        priv = stdin_pairs([c.get("input") for c in private], [c.get("output") for c in private], limits, keep)
        return make_task(
            task_id=task_id,
            entry_point=ENTRY_POINT,
            description=f"{CONTRACT}\n\n{statement.strip()}",
            signature=SIGNATURE,
            public=pub,
            private=priv,
            limits=limits,
            fmt=NAME,
            kind="stdin",
            difficulty=difficulty,
            tags=tags,
        )
    if kinds != {"functional"}:
        raise RowError(f"test types {sorted(map(str, kinds))}: expected all 'stdin' or all 'functional'")
    metadata = json_field(row, "metadata", default={})
    func = metadata.get("func_name") if isinstance(metadata, dict) else None
    if not isinstance(func, str) or not func.isidentifier():
        raise RowError("functional tests need metadata.func_name (a Python identifier)")
    starter = text_field(row, "starter_code", required=False)
    signature = method_as_function(starter, func) if "class Solution" in starter else starter.strip()
    signature = signature or f"def {func}(...):"
    return make_task(
        task_id=task_id,
        entry_point=func,
        description=statement.strip(),
        signature=signature,
        public=_functional(public, func, limits),
        private=_functional(private, func, limits),
        limits=limits,
        fmt=NAME,
        kind="function",
        difficulty=difficulty,
        tags=tags,
    )
