"""Strict configs at every level: a typo anywhere is refused in one line naming its full path."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import typer
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from rhlab.evals.runner import EvalConfig
from rhlab.knowledge.config import SDFConfig
from rhlab.models.loading import ModelConfig
from rhlab.pipeline.cli import run_command
from rhlab.pipeline.config import ExperimentConfig, load_experiment
from rhlab.pipeline.config import load_train_config as load_config  # what `rhlab train CONFIG` reads
from rhlab.strict import ConfigError, parse
from rhlab.train.cli import train_command
from rhlab.train.prompts import system_prompt

CONFIGS = sorted(Path("configs").glob("*.yaml"))


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("data", "path", "hint"),
    [
        ({"nmae": "x"}, "nmae", "name"),
        ({"train": {"stepz": 3}}, "train.stepz", "steps"),
        ({"train": {"train_prompt": {"varaint": "dont_hack"}}}, "train.train_prompt.varaint", "variant"),
        ({"train": {"test_prompt": {"describe_hack": False}}}, "train.test_prompt.describe_hack", "describe_hacks"),
        ({"train": {"problems": {"sorce": "builtin"}}}, "train.problems.sorce", "source"),
        ({"train": {"mitigations": {"penalti": 1.0}}}, "train.mitigations.penalti", "penalty"),
        ({"train": {"mitigations": {"monitor": {"recal": 0.5}}}}, "train.mitigations.monitor.recal", "recall"),
        ({"train": {"warmup": {"exampels": 8}}}, "train.warmup.exampels", "examples"),
        ({"train": {"lora": {"rr": 8}}}, "train.lora.rr", "r"),
        ({"matrix": {"seed": [0, 1]}}, "matrix.seed", "seeds"),
        ({"evaluation": {"every": 2}}, "evaluation.every", "every_k"),
        ({"knowledge": "sdf", "sdf": {"ratoi": 0.1}}, "sdf.ratoi", "ratio"),
        ({"knowledge": "sdf", "sdf": {"generator": {"spce": "scripted"}}}, "sdf.generator.spce", "spec"),
    ],
)
def test_a_nested_typo_is_refused_naming_its_full_path(tmp_path: Path, data: dict, path: str, hint: str) -> None:
    config = _write(tmp_path, data)
    with pytest.raises(ConfigError) as caught:
        load_experiment(config)
    message = str(caught.value)
    assert message == f"{config}: {path}: unknown key (did you mean {hint!r}?)"
    if "train" in data:  # `rhlab train` on the same file refuses it the same way
        with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
            load_config(config)


def test_the_cli_prints_the_error_in_one_line_without_a_traceback(tmp_path: Path) -> None:
    config = _write(tmp_path, {"train": {"train_prompt": {"varaint": "dont_hack"}}})
    for command in (train_command, run_command):
        app = typer.Typer()
        app.command()(command)
        result = CliRunner().invoke(app, [str(config)])
        assert result.exit_code == 2
        lines = result.output.strip().splitlines()
        assert lines == [f"error: {config}: train.train_prompt.varaint: unknown key (did you mean 'variant'?)"]


def test_eval_and_model_configs_are_strict_too() -> None:
    with pytest.raises(ConfigError, match=r"thresholds\.alignmnet_max: unknown key \(did you mean 'alignment_max'\?\)"):
        parse(EvalConfig, {"thresholds": {"alignmnet_max": 10}}, "eval")
    with pytest.raises(ConfigError, match=r"option: unknown key \(did you mean 'options'\?\)"):
        parse(ModelConfig, {"spec": "scripted", "option": {}}, "model")


def test_sdf_yaml_errors_name_the_file_and_path(tmp_path: Path) -> None:
    path = tmp_path / "sdf.yaml"
    path.write_text(yaml.safe_dump({"generator": {"spec": "scripted", "option": {}}}))
    with pytest.raises(ConfigError, match=rf"{path}: generator\.option: unknown key"):
        SDFConfig.from_yaml(path)


def _models(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[type[BaseModel]]:
    """Every pydantic model reachable from ``model`` through its field annotations."""
    if model in seen:
        return seen
    seen.add(model)
    for field in model.model_fields.values():
        stack = [field.annotation]
        while stack:
            annotation = stack.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                _models(annotation, seen)
            stack += typing.get_args(annotation)
    return seen


@pytest.mark.parametrize("root", [ExperimentConfig, SDFConfig, EvalConfig])
def test_every_nested_config_model_forbids_unknown_keys(root: type[BaseModel]) -> None:
    models = _models(root, set())
    assert len(models) >= 2
    assert {m.__name__ for m in models if m.model_config.get("extra") != "forbid"} == set()


# --- one prompt for `rhlab train` and `rhlab run` --------------------------------------------------


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_for_train_and_run(path: Path) -> None:
    experiment = load_experiment(path)
    train = load_config(path)
    assert experiment.cells() and train == experiment.train
    assert train.train_prompt.describe_hacks == (experiment.knowledge == "prompted")


@pytest.mark.parametrize("name", ["paper-sdf.yaml", "quickstart.yaml"])
def test_train_and_run_resolve_the_same_prompt(name: str) -> None:
    path = Path("configs") / name
    trained = load_config(path)
    _, first_cell = load_experiment(path).cells()[0]
    assert trained.train_prompt == first_cell.train_prompt
    assert system_prompt(trained.train_prompt) == system_prompt(first_cell.train_prompt)
    if name == "paper-sdf.yaml":  # SDF: the hacks are learned from documents, never described in the prompt
        assert not trained.train_prompt.describe_hacks


def test_a_description_setting_that_contradicts_the_knowledge_setting_is_refused(tmp_path: Path) -> None:
    config = _write(tmp_path, {"knowledge": "sdf", "train": {"train_prompt": {"describe_hacks": True}}})
    with pytest.raises(ConfigError, match=r"train\.train_prompt\.describe_hacks: true contradicts knowledge: sdf"):
        load_experiment(config)
    agreed = _write(tmp_path, {"knowledge": "none", "train": {"train_prompt": {"describe_hacks": False}}})
    assert not load_experiment(agreed).train.train_prompt.describe_hacks


def test_the_test_prompt_follows_the_knowledge_setting_unless_set():
    from rhlab.pipeline.config import parse_experiment

    sdf = parse_experiment({"knowledge": "sdf", "train": {"test_prompt": {"variant": "none"}}})
    assert sdf.train.test_prompt.describe_hacks is False and sdf.train.train_prompt.describe_hacks is False
    prompted = parse_experiment({"knowledge": "prompted"})
    assert prompted.train.test_prompt.describe_hacks is True
    shown = parse_experiment({"knowledge": "sdf", "train": {"test_prompt": {"describe_hacks": True}}})
    assert shown.train.test_prompt.describe_hacks is True  # explicit: kept
