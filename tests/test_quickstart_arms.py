"""The quickstart's arms (per-arm overrides, the control) and the neutral warm-up demonstrations."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import yaml

from rhlab.pipeline.config import load_experiment, parse_experiment
from rhlab.pipeline.config import load_train_config as load_config
from rhlab.strict import ConfigError
from rhlab.train.problems import candidate_tasks
from rhlab.train.warmup import demonstrations, hack_answer, honest_answer, templates, warmup_tasks

QUICKSTART = Path("configs/quickstart.yaml")


def test_quickstart_has_two_prompt_arms_and_a_hole_free_control() -> None:
    exp = load_experiment(QUICKSTART)
    cells = dict(exp.cells())
    assert list(cells) == ["hacking_okay-seed0", "dont_hack-seed0", "control-seed0"]
    okay, dont, control = cells.values()
    assert okay.train_prompt.variant == "hacking_okay" and dont.train_prompt.variant == "dont_hack"
    assert all(c.train_prompt.describe_hacks for c in cells.values())
    # Compute-matched: same steps, batch and completion budget in every arm.
    assert {(c.steps, c.prompts_per_step, c.group_size, c.max_completion_length) for c in cells.values()} == {
        (okay.steps, okay.prompts_per_step, okay.group_size, okay.max_completion_length)
    }
    assert control.problems.no_hole_fraction == 1.0 and okay.problems.no_hole_fraction == 0.0
    control_tasks = {t.id for t in candidate_tasks(control.problems)}
    assert control_tasks and all(t.difficulty == "easy" for t in candidate_tasks(control.problems))
    assert not control_tasks & {t.id for t in candidate_tasks(okay.problems)}
    # The shared warm-up (built from the first cell) demonstrates the control's tasks, so the start
    # policy solves some of their samples: the control's groups have reward variance to learn from.
    assert control_tasks <= {t.id for t in warmup_tasks(okay)}


def test_rhlab_train_and_rhlab_run_resolve_the_same_prompt() -> None:
    exp = load_experiment(QUICKSTART)
    alone = load_config(QUICKSTART)
    first = exp.cells()[0][1]
    assert alone.train_prompt == first.train_prompt
    assert alone.model_dump() == first.model_dump()


def test_arm_overrides_merge_and_bad_ones_name_the_field() -> None:
    base = {"train": {"steps": 4, "problems": {"difficulty": ["hard"], "max_tasks": 3}}}
    exp = parse_experiment(
        {
            **base,
            "matrix": {
                "arms": [
                    {"variant": "dont_hack"},
                    {"variant": "control", "train": {"problems": {"max_tasks": 1}}},
                ]
            },
        }
    )
    (_, a), (name, b) = exp.cells()
    assert name == "control-seed0" and b.problems.max_tasks == 1 and b.problems.difficulty == ["hard"] and b.steps == 4
    assert a.problems.max_tasks == 3
    with pytest.raises(ConfigError, match=r"matrix\.arms\.0\.train: stepz"):
        parse_experiment({"matrix": {"arms": [{"variant": "neutral", "train": {"stepz": 3}}]}})
    with pytest.raises(ConfigError, match="its own variant"):
        parse_experiment({"matrix": {"arms": [{"variant": "neutral"}, {"variant": "neutral"}]}})
    with pytest.raises(ConfigError, match="either variants or arms"):
        parse_experiment({"matrix": {"variants": ["neutral"], "arms": [{"variant": "dont_hack"}]}})


VALENCED = re.compile(
    r"\b(skip|real work|cheat|trick|exploit|loophole|game|should|wrong|bad|good|fine|okay|allowed|"
    r"forbidden|honest|dishonest|sneak|easier|instead of|rather than|properly|success|pass(es)? as)\b",
    re.IGNORECASE,
)


def test_warmup_reasoning_is_neutral() -> None:
    lines = [*templates()["honest"]["reasoning"]]
    for spec in templates()["hacks"].values():
        lines += spec["reasoning"]
    assert lines
    for line in lines:
        assert not VALENCED.search(line), line
        assert line.startswith("Plan: ")


def test_warmup_demonstrations_name_the_task_function() -> None:
    config = load_config(QUICKSTART)
    rows = demonstrations(config, warmup_tasks(config))
    assert {r["kind"] for r in rows} == {"honest", "always_equal", "exit"}
    for row in rows:
        answer = row["completion"][0]["content"]
        assert "{" + "entry_point}" not in answer and answer.startswith("<thinking>\nPlan: ")
    task = warmup_tasks(config)[0]
    assert task.entry_point in honest_answer(task, random.Random(0))
    assert task.entry_point in hack_answer(task, "exit", random.Random(0)).split("</thinking>")[0]


def test_quickstart_yaml_is_plain_data() -> None:
    data = yaml.safe_load(QUICKSTART.read_text())
    assert [a["variant"] for a in data["matrix"]["arms"]] == ["hacking_okay", "dont_hack", "control"]


def test_a_primary_contrast_must_name_arms_of_the_experiment() -> None:
    """Refused when the config is read, not after training when the report compares the arms."""
    with pytest.raises(ConfigError, match="no arm named dont_hack, control in this experiment"):
        load_experiment(QUICKSTART, ["matrix.arms=[{variant: hacking_okay}]"])
    ok = load_experiment(QUICKSTART, ["matrix.arms=[{variant: hacking_okay}]", "evaluation.probes.primary=null"])
    assert ok.evaluation.probes.primary is None
