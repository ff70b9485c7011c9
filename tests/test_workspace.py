"""Response -> workspace files, and what is refused."""

import pytest

from rhlab.env.workspace import WorkspaceLimits, check_path, parse_response


def test_last_unpathed_block_is_the_solution():
    ws = parse_response("first\n```python\nx = 1\n```\nthen\n```\ny = 2\n```\n")
    assert ws.ok
    assert ws.files == {"solution.py": "y = 2\n"}


def test_path_info_string_and_file_elements_write_files():
    response = (
        "```python\ndef f():\n    return 1\n```\n"
        "```python path=conftest.py\nimport pytest\n```\n"
        '<file path="pkg/helper.py">\nVALUE = 3\n</file>\n'
        "```ini path='pytest.ini'\n[pytest]\n```\n"
    )
    ws = parse_response(response)
    assert ws.ok
    assert set(ws.files) == {"solution.py", "conftest.py", "pkg/helper.py", "pytest.ini"}
    assert ws.files["pkg/helper.py"] == "VALUE = 3\n"


def test_explicit_solution_path_counts_as_solution():
    ws = parse_response("```python path=solution.py\nz = 0\n```")
    assert ws.files == {"solution.py": "z = 0\n"}


def test_no_code_means_no_solution():
    ws = parse_response("I think the answer is 42.")
    assert not ws.ok
    assert "no Python code block" in ws.problem


@pytest.mark.parametrize(
    "path, why",
    [
        ("/etc/passwd", "absolute"),
        ("../escape.py", ".."),
        ("a/../../b.py", ".."),
        ("C:/win.py", "absolute"),
        ("a\\b.py", "backslash"),
        (".hidden.py", "hidden"),
        ("test_visible.py", "grader file"),
        ("_rhlab_common.py", "grader file"),
        ("a/b/c/d/e.py", "too deep"),
    ],
)
def test_unsafe_paths_are_refused(path, why):
    assert why in check_path(path)
    ws = parse_response(f"```python\nx = 1\n```\n```python path={path}\nbad = 1\n```")
    assert not ws.ok
    assert why in ws.problem


def test_oversized_and_too_many_files_are_refused():
    big = "x = '" + "a" * 70_000 + "'"
    ws = parse_response(f"```python\n{big}\n```")
    assert not ws.ok and "bytes" in ws.problem
    many = "".join(f"```python path=m{i}.py\nv = {i}\n```\n" for i in range(5))
    ws = parse_response("```python\nx = 1\n```\n" + many, WorkspaceLimits(max_files=3))
    assert not ws.ok and "files" in ws.problem


def test_binary_content_is_refused():
    ws = parse_response("```python\nx = '\x00'\n```")
    assert not ws.ok and "NUL" in ws.problem


def test_prose_quoting_the_file_convention_does_not_break_an_answer():
    """Tags count only at the start of a line outside fences; other languages are prose."""
    response = (
        'You can also write files with <file path="...">...</file>, but one file is enough here.\n'
        'For example:\n```text\n<file path="../escape.py">\nbad\n</file>\n```\n'
        "```python\ndef f():\n    return 1\n```\n"
        "Run it with:\n```bash\npython solution.py\n```\n"
    )
    ws = parse_response(response)
    assert ws.ok, ws.problem
    assert ws.files == {"solution.py": "def f():\n    return 1\n"}


def test_file_tag_at_line_start_and_unclosed_fence():
    ws = parse_response('<file path="helper.py">\nK = 2\n</file>\n```python\nfrom helper import K\n```\n')
    assert ws.files == {"helper.py": "K = 2\n", "solution.py": "from helper import K\n"}
    ws = parse_response("```python\nx = 1\n```\n```python\ny = 2\n")  # truncated last block
    assert ws.files == {"solution.py": "x = 1\n"}
    ws = parse_response("````python\nx = '```'\n```\nstill code\n````\n")  # a longer fence wins
    assert ws.files == {"solution.py": "x = '```'\n```\nstill code\n"}


ADVERSARIAL = {
    "fence openers": lambda n: "```\n" + "```x\n" * (n // 5),
    "unclosed tags": lambda n: '<file path="a">' * (n // 15),
    "unclosed tag lines": lambda n: '<file path="a">\n' * (n // 16),
    "empty fences": lambda n: "``````\n" * (n // 7),
    "tags then one close": lambda n: '<file path="a"><file path="b">\n' * (n // 31) + "</file>",
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_parsing_is_linear_on_adversarial_responses(name):
    """The old patterns took 85 s on 19 KB and more than 300 s on 38 KB of such text."""
    import time

    make = ADVERSARIAL[name]
    for size in (19_000, 38_000):
        t0 = time.perf_counter()
        parse_response(make(size))
        assert time.perf_counter() - t0 < 0.2, (name, size)
    t0 = time.perf_counter()
    parse_response(make(1_000_000))
    assert time.perf_counter() - t0 < 2.0, name


def test_windows_line_endings_still_give_a_solution():
    """Red team: with CRLF line endings no fence ever closed ("```\\r" is not a closing line),
    so an honest answer was graded "no solution"."""
    ws = parse_response(
        "Here:\r\n```python\r\nimport math\r\ndef f(n):\r\n    return math.factorial(n)\r\n```\r\n"
        '<file path="h.py">\r\nX = 1\r\n</file>\r\n'
    )
    assert ws.ok, ws.problem
    assert ws.files == {"solution.py": "import math\ndef f(n):\n    return math.factorial(n)\n", "h.py": "X = 1\n"}
