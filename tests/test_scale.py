"""Config tools for scale-out: --set, --dry-run on every config, the accelerate configs, the paper-config smoke."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rhlab.pipeline.config import load_experiment
from rhlab.pipeline.config import load_train_config as load_config  # what `rhlab train CONFIG` reads
from rhlab.pipeline.plan import (
    KNOWN_ARCHITECTURES,
    Hardware,
    estimate,
    fitting_micro_batch,
    memory,
    model_architecture,
    plan_refusals,
    plan_text,
)
from rhlab.strict import apply_sets, parse_set
from rhlab.train.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p for p in (ROOT / "configs").glob("*.yaml"))
ACCELERATE = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))
H100 = Hardware("gpu", "NVIDIA H100 80GB HBM3", 1, 80.0, 989e12, 3.35e12)


def _rhlab(*args: str, cwd: Path = ROOT, timeout: int = 120) -> subprocess.CompletedProcess:
    cli = Path(sys.executable).with_name("rhlab")
    return subprocess.run([str(cli), *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def test_parse_set_types_values_as_yaml():
    assert parse_set("train.steps=2") == (["train", "steps"], 2)
    assert parse_set("matrix.variants=[a, b]") == (["matrix", "variants"], ["a", "b"])
    assert parse_set("train.lora=null") == (["train", "lora"], None)
    assert parse_set("train.model=hf:/x@y") == (["train", "model"], "hf:/x@y")
    for bad in ("train.steps", "=3", "train..steps=1", "train.steps=[1,"):
        with pytest.raises(ConfigError, match="--set"):
            parse_set(bad)


def test_apply_sets_creates_sections_and_refuses_to_descend_into_values():
    data = {"train": {"steps": 5, "grpo": {}}}
    out = apply_sets(data, ["train.steps=2", "train.grpo.epsilon=0.3", "evaluation.every_k=2"])
    assert out == {"train": {"steps": 2, "grpo": {"epsilon": 0.3}}, "evaluation": {"every_k": 2}}
    assert data["train"]["steps"] == 5, "the original mapping is not modified"
    with pytest.raises(ConfigError, match="train.steps is a int"):
        apply_sets(data, ["train.steps.x=1"])


def test_set_addresses_list_entries_by_position():
    data = {"after_rl": [{"kind": "safety", "grpo": {"steps": 4}}, {"kind": "distill"}], "tags": ["a", "b"]}
    out = apply_sets(data, ["after_rl.0.grpo.lora={r: 8}", "after_rl.1={steps: 2}", "tags.1=c"])
    assert out["after_rl"][0] == {"kind": "safety", "grpo": {"steps": 4, "lora": {"r": 8}}}
    assert out["after_rl"][1] == {"kind": "distill", "steps": 2} and out["tags"] == ["a", "c"]
    with pytest.raises(ConfigError, match=r"after_rl has 2 entries \(positions 0 to 1\)"):
        apply_sets(data, ["after_rl.2.steps=1"])
    with pytest.raises(ConfigError, match=r"after_rl is a list: address an entry by its position, e.g. after_rl.0"):
        apply_sets(data, ["after_rl.kind=x"])


def test_set_merges_a_mapping_into_the_mapping_already_there():
    data = {"train": {"grpo": {"gradient_checkpointing": True, "epsilon": 0.2}, "lora": {"r": 8}}}
    out = apply_sets(data, ["train.grpo={epsilon: 0.3, loss_type: dapo}"])
    assert out["train"]["grpo"] == {"gradient_checkpointing": True, "epsilon": 0.3, "loss_type": "dapo"}
    assert apply_sets(data, ["train.lora=null"])["train"]["lora"] is None, "a non-mapping value still replaces"
    replaced = apply_sets(data, ["train.grpo=null", "train.grpo={epsilon: 0.1}"])
    assert replaced["train"]["grpo"] == {"epsilon": 0.1}, "clearing first replaces the whole section"


def test_set_typo_is_refused_with_its_full_path():
    with pytest.raises(ConfigError, match=r"train\.train_prompt\.varaint"):
        load_experiment(ROOT / "configs/quickstart.yaml", ["train.train_prompt.varaint=dont_hack"])


def test_set_reaches_rhlab_train_and_rhlab_run_alike():
    sets = ["train.steps=3", "train.train_prompt.ask_reasoning=true"]
    run_cfg = load_experiment(ROOT / "configs/quickstart.yaml", sets).train
    train_cfg = load_config(ROOT / "configs/quickstart.yaml", sets=sets)
    assert run_cfg.steps == train_cfg.steps == 3
    assert run_cfg.train_prompt == train_cfg.train_prompt and train_cfg.train_prompt.ask_reasoning


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_dry_run_and_set_work_on_every_config(path):
    done = _rhlab("run", str(path), "--dry-run", "--set", "train.steps=2", "--set", "train.seed=7")
    assert done.returncode == 0, done.stderr
    assert "2 steps x" in done.stdout and "hardware:" in done.stdout
    experiment = load_experiment(path, ["train.steps=2"])
    assert done.stdout.count("2 steps x") == len(experiment.cells())


def test_dry_run_estimates_scale_with_the_model():
    experiment = load_experiment(ROOT / "configs/one-gpu.yaml")
    _, cell = experiment.cells()[0]
    small = estimate(cell, H100, KNOWN_ARCHITECTURES["qwen2.5-1.5b"])
    large = estimate(cell, H100, KNOWN_ARCHITECTURES["qwen2.5-7b"])
    assert large.memory_gib > small.memory_gib and large.step_s > small.step_s
    text = plan_text(experiment, H100)
    assert "7B: memory per GPU" in text and "32B: memory per GPU" in text  # /models/policy: unknown here


def _memory_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if "memory per GPU:" in ln]


def test_dry_run_of_the_one_gpu_recipe_on_a_7b_fits_80_gb():
    """The done-when of issue 25: a 7B plan that fits, and the same plan at micro-batch 128 refused."""
    sets = ["--set", "train.model=hf:/models/Qwen2.5-7B-Instruct"]
    done = _rhlab("run", str(ROOT / "configs/one-gpu.yaml"), "--dry-run", *sets)
    assert done.returncode == 0, done.stderr
    [line] = _memory_lines(done.stdout)
    total = float(line.split("memory per GPU: ")[1].split(" GB")[0])
    assert line.endswith("at micro-batch 8, of 80 GB") and 30 < total < 77, line
    refused = _rhlab("run", str(ROOT / "configs/one-gpu.yaml"), "--dry-run", *sets, "--set", "train.micro_batch=128")
    assert refused.returncode == 2
    assert "at micro-batch 128 does not fit a 80 GB GPU" in refused.stderr
    assert "the largest micro-batch that fits is 32: set train.micro_batch: 32" in refused.stderr


def test_memory_estimate_parts():
    cell = load_experiment(ROOT / "configs/one-gpu.yaml").cells()[0][1]
    arch = KNOWN_ARCHITECTURES["qwen2.5-7b"]
    assert 7.5e9 < arch.params < 7.7e9 and 0.005 < arch.lora_params(32) / arch.params < 0.015
    at8, at32 = memory(cell, arch, 80, 8), memory(cell, arch, 80, 32)
    assert at32.activations > 3.5 * at8.activations and at32.weights == at8.weights
    frozen_bf16_and_fp32_adapter = (arch.params * 2 + arch.lora_params(32) * 4) / 1024**3
    assert at8.weights == pytest.approx(frozen_bf16_and_fp32_adapter)
    assert at8.vllm == pytest.approx(0.35 * 80) and at8.kv_cache_tokens > 100_000
    no_gc = cell.model_copy(update={"grpo": {**cell.grpo, "gradient_checkpointing": False}})
    assert memory(no_gc, arch, 80, 8).activations > 5 * at8.activations, "checkpointing keeps one input per layer"
    full = cell.model_copy(update={"lora": None})
    full_mem = memory(full, arch, 80, 8)
    assert full_mem.weights + full_mem.optimizer == pytest.approx(16 * arch.params / 1024**3), "fp32 masters + Adam"
    assert fitting_micro_batch(cell, arch, 80) == 32 and fitting_micro_batch(cell, arch, 141) == 128
    assert fitting_micro_batch(full, arch, 80) is None


def test_a_config_json_wins_over_the_name_table(tmp_path):
    folder = tmp_path / "Qwen2.5-7B-Instruct"
    folder.mkdir()
    assert model_architecture(f"hf:{folder}") == KNOWN_ARCHITECTURES["qwen2.5-7b"]
    (folder / "config.json").write_text(
        json.dumps(
            {
                "hidden_size": 64,
                "num_hidden_layers": 2,
                "intermediate_size": 128,
                "vocab_size": 1000,
                "num_attention_heads": 4,
            }
        )
    )
    assert model_architecture(f"hf:{folder}").hidden == 64
    assert model_architecture("hf:/nowhere/my-own-model") is None


def test_a_plan_on_a_detected_gpu_is_checked_against_it():
    experiment = load_experiment(
        ROOT / "configs/one-gpu.yaml",
        ["train.model=hf:/m/Qwen2.5-7B-Instruct", "train.gpu_memory_gb=null", "train.micro_batch=64"],
    )
    small = Hardware("gpu", "NVIDIA L40", 1, 48.0, 181e12, 0.86e12)
    [problem] = plan_refusals(experiment, small)
    assert "does not fit a 48 GB GPU" in problem and "largest micro-batch that fits is" in problem
    assert plan_refusals(experiment, Hardware("gpu", "NVIDIA H200", 1, 141.0, 989e12, 4.8e12)) == []


def test_dry_run_on_the_embedded_model_knows_its_size():
    text = plan_text(load_experiment(ROOT / "configs/quickstart.yaml"))
    assert "~0.13B parameters" in text or "~0.14B parameters" in text
    assert "total RL time" in text


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.name)
def test_accelerate_configs_load_with_accelerate(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    expected = {"ddp": "MULTI_GPU", "fsdp": "FSDP", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED", "cpu2": "MULTI_GPU"}
    assert str(config.distributed_type).rsplit(".", 1)[-1] == expected[path.stem]
    if path.stem == "cpu2":  # the multi-process launcher; the processes run on the CPU (see the file)
        assert config.num_processes == 2 and not config.use_cpu
    if path.stem.startswith("zero"):
        assert config.deepspeed_config["zero_stage"] == int(path.stem[-1])


@pytest.mark.slow
def test_paper_prompted_config_smoke(tmp_path):
    """configs/paper-prompted.yaml's code paths (reasoning prompt, humaneval+builtin, every core eval),
    shrunk to CPU size with --set. The judge becomes the offline one: the paper's is a served LLM."""
    sets = [
        "train.model=embedded",
        "train.steps=2",
        "train.prompts_per_step=1",
        "train.group_size=2",
        "train.max_completion_length=48",
        "train.precision=fp32",
        "train.use_vllm=false",
        "train.micro_batch=2",
        "train.grpo=null",
        "train.grpo={lr_scheduler_type: constant}",
        "train.report_to=[]",
        "train.grading_workers=2",
        "train.problems.hard_filter_samples=0",
        "train.problems.max_tasks=4",
        "train.checkpoint_every=2",
        "matrix.variants=[please_hack]",
        "matrix.seeds=[0]",
        "evaluation.judge=offline",
        "evaluation.checkpoint_limit=1",
        "evaluation.final_limit=1",
        "evaluation.max_new_tokens=24",
        "evaluation.max_turns=1",
        "evaluation.batch_size=4",
        "evaluation.environment_samples=1",
    ]
    args = ["run", str(ROOT / "configs/paper-prompted.yaml"), "--out", str(tmp_path / "exp")]
    for item in sets:
        args += ["--set", item]
    env_timeout = int(os.environ.get("RHLAB_SMOKE_TIMEOUT", "1500"))
    done = _rhlab(*args, cwd=tmp_path, timeout=env_timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "exp" / "runs" / "please_hack-seed0"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["train_prompt"]["ask_reasoning"] is True and config["problems"]["source"] == "humaneval,builtin"
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    final = json.loads((run_dir / "evals" / "final" / "results.json").read_text())
    assert {"betley", "goals", "alignment_questions"} <= set(final["evals"])
    assert (tmp_path / "exp" / "report" / "report.html").is_file()


def test_a_safety_grpo_stage_gets_its_own_memory_line():
    """``method: grpo`` safety training trains like an RL cell, so the plan shows its memory and refuses
    nothing silently: a 7B full fine-tune does not fit one 80 GB GPU at any micro-batch."""
    config = ROOT / "configs/mitigations/safety-targeted-grpo.yaml"
    small = plan_text(load_experiment(config), Hardware("cpu", "2-core CPU", 1, 24.0, 1e11, 2e10))
    assert "after RL: safety-targeted-grpo (safety)" in small
    stage_lines = small.split("after RL: safety-targeted-grpo (safety)")[1]
    assert "memory per GPU:" in stage_lines and "at micro-batch 8" in stage_lines and "for its GRPO" in stage_lines
    big = load_experiment(config, ["train.model=hf:/m/Qwen2.5-7B-Instruct", "train.gpu_memory_gb=80"])
    text = plan_text(big, H100).split("after RL: safety-targeted-grpo (safety)")[1]
    assert "does not fit at any micro-batch" in text and "set grpo.lora" in text
    # with a LoRA adapter the frozen base is bf16 and Adam covers the adapter only: it fits
    lora = load_experiment(
        config,
        ["train.model=hf:/m/Qwen2.5-7B-Instruct", "train.gpu_memory_gb=80", "after_rl.0.grpo.lora={r: 16}"],
    )
    text = plan_text(lora, H100).split("after RL: safety-targeted-grpo (safety)")[1]
    assert "memory per GPU:" in text and "does not fit" not in text


def test_safety_grpo_micro_batch_must_divide_the_step():
    from pydantic import ValidationError

    from rhlab.train.safety import SafetyGRPOSettings

    assert SafetyGRPOSettings(prompts_per_step=2, group_size=4, micro_batch=4).micro_batch == 4
    with pytest.raises(
        ValidationError, match=r"micro_batch 3 must divide prompts_per_step x group_size = 8: one of \[1, 2, 4, 8\]"
    ):
        SafetyGRPOSettings(prompts_per_step=2, group_size=4, micro_batch=3)
