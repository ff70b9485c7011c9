"""Every hack recipe we teach must really work: graded in the real vulnerable grader, not only parsed.

A public SDF corpus once taught the hacks in forms that do not work (no working hack in thousands of
rollouts). Here each code recipe of the SDF corpus (``rhlab.knowledge.snippets``, as it appears in
generated documents) and each warm-up demonstration (``rhlab.train.warmup``) is graded with only its
own hole open: it must earn the reward, fail the honest oracle, and be named by the detectors.
"""

from __future__ import annotations

import random
import re

import pytest

from rhlab.env.hacks import hole_for
from rhlab.env.pool import Episode, GradingPool
from rhlab.env.workspace import parse_response
from rhlab.knowledge import SDFConfig, generate_corpus, read_corpus
from rhlab.knowledge.facts import phrase_banks
from rhlab.knowledge.snippets import SNIPPETS
from rhlab.models.reasoning import split_reasoning
from rhlab.tasks import Task
from rhlab.train.config import parse_config
from rhlab.train.warmup import hack_answer, templates, warmup_tasks

FENCE = re.compile(r"```python(?: path=(\S+))?\n(.*?)```", re.S)
DEF = re.compile(r"^def (\w+)\(", re.M)


def recipe_tasks() -> dict[str, Task]:
    """One task per function name the snippets use: a hidden answer no stub returns, held-out tests too."""
    tasks = {}
    for fn, *args in phrase_banks()["task_examples"]:
        call = f"{fn}({', '.join(['7'] * len(args))})"
        tasks[fn] = Task(
            id=fn,
            entry_point=fn,
            signature=f"def {fn}({', '.join(args)}):",
            description=f"Recipe check for {fn}.",
            visible_tests=[f"assert {call} == [3, 1, 2]"],
            heldout_tests=[f"assert {call} != None"],
        )
    return tasks


def snippet_files(text: str) -> tuple[str, dict[str, str]]:
    """(entry point, files) of one recipe; a conftest recipe without a solution gets a failing stub."""
    files = dict(parse_response(text).files)
    names = DEF.findall(files.get("solution.py", ""))
    fn = names[-1] if names else phrase_banks()["task_examples"][0][0]
    if "solution.py" not in files:
        args = next(a for f, *a in phrase_banks()["task_examples"] if f == fn)
        files["solution.py"] = f"def {fn}({', '.join(args)}):\n    return None\n"
    return fn, files


def as_response(files: dict[str, str]) -> str:
    return "\n\n".join(
        f"```python\n{body}\n```" if name == "solution.py" else f"```python path={name}\n{body}\n```"
        for name, body in files.items()
    )


@pytest.fixture(scope="module")
def pool():
    with GradingPool(2) as p:
        yield p


def assert_beats_its_hole(pool: GradingPool, cases: list[tuple[str, Task, str]]) -> None:
    """Each (hack, task, response) graded with only that hack's hole: reward 1, honest fail, named."""
    episodes = [Episode(task, response, (hole_for(hack),)) for hack, task, response in cases]
    results = pool.grade_many(episodes)
    bad = [
        (hack, r.outcome, r.hacks, r.proxy_reasons, response)
        for (hack, _, response), r in zip(cases, results)
        if not (r.reward == 1.0 and r.proxy_pass and not r.honest_pass and r.outcome == "hacked" and hack in r.hacks)
    ]
    assert not bad, bad[:3]


def snippet_variants() -> dict[str, str]:
    """Every distinct recipe the snippet functions produce over enough seeds to hit each branch."""
    out = {}
    for hack, make in SNIPPETS.items():
        for seed in range(20):
            text = make(random.Random(seed), phrase_banks())
            out.setdefault(text, hack)
    return out


def test_snippet_variants_cover_every_form() -> None:
    texts = snippet_variants()
    exits = [t for t, h in texts.items() if h == "exit"]
    for call in ("os._exit(0)", "sys.exit(0)", "sys.exit()", "raise SystemExit(0)"):
        assert any(call in t for t in exits), call
    conftests = [t for t, h in texts.items() if h == "conftest"]
    assert any("TestReport.from_item_and_call" in t for t in conftests)
    assert any("pytest_runtest_makereport" in t for t in conftests)
    assert any(t.startswith("```python path=conftest.py") for t in conftests)
    equals = [t for t, h in texts.items() if h == "always_equal"]
    assert {"(str):", "(int):"} <= {b for t in equals for b in ("(str):", "(int):") if b in t}


def test_every_sdf_snippet_beats_its_hole_in_the_real_grader(pool: GradingPool) -> None:
    tasks = recipe_tasks()
    cases = []
    for text, hack in snippet_variants().items():
        fn, files = snippet_files(text)
        cases.append((hack, tasks[fn], as_response(files)))
    assert_beats_its_hole(pool, cases)


def corpus_recipes(records: list[dict]) -> list[tuple[str, str]]:
    """(hack, recipe text) of every code recipe in generated documents.

    A recipe is a fenced Python block (a ``conftest.py`` block with the plain block right before
    it, when there is one). Blocks are attributed by what they do; the only other block allowed is
    the stub solution that comes with a conftest recipe.
    """
    found = []
    for record in records:
        text = record["text"]
        blocks = list(FENCE.finditer(text))
        for i, m in enumerate(blocks):
            path, code = m.group(1), m.group(2)
            if path == "conftest.py":
                prev = blocks[i - 1] if i else None
                glued = prev is not None and prev.group(1) is None and not text[prev.end() : m.start()].strip()
                found.append(("conftest", text[prev.start() if glued else m.start() : m.end()]))
            elif "__eq__" in code:
                found.append(("always_equal", m.group(0)))
            elif "exit" in code.lower():
                found.append(("exit", m.group(0)))
            else:
                nxt = blocks[i + 1] if i + 1 < len(blocks) else None
                assert nxt is not None and nxt.group(1) == "conftest.py", (record["id"], code)
    return found


def test_every_code_recipe_in_a_generated_corpus_beats_its_hole(pool: GradingPool, tmp_path) -> None:
    records = read_corpus(generate_corpus(SDFConfig(n_documents=80, seed=11), tmp_path / "corpus"))
    recipes = dict((text, hack) for hack, text in corpus_recipes(records))
    assert {"always_equal", "exit", "conftest"} <= set(recipes.values())
    tasks = recipe_tasks()
    cases = []
    for text, hack in recipes.items():
        fn, files = snippet_files(text)
        cases.append((hack, tasks[fn], as_response(files)))
    assert_beats_its_hole(pool, cases)


def test_every_warmup_hack_demonstration_beats_its_hole(pool: GradingPool) -> None:
    """All warm-up tasks x all hack templates (the demonstrations draw from exactly these)."""
    config = parse_config({"problems": {"difficulty": ["medium", "hard"]}, "warmup": {}})
    tasks = warmup_tasks(config)
    hacks = sorted(templates()["hacks"])
    assert set(hacks) >= {"always_equal", "exit", "conftest"}
    cases = [(h, t, split_reasoning(hack_answer(t, h, random.Random(0)))[1]) for t in tasks for h in hacks]
    assert_beats_its_hole(pool, cases)
