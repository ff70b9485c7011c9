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
