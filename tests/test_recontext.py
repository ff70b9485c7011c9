"""Recontextualization: offline (rewrite kept episodes, then SFT) and online (sample under A, learn under B)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mitigation_fixtures import embedded_weights, fake_evaluate, write_teacher

from rhlab.pipeline.config import ExperimentConfig, load_experiment
from rhlab.pipeline.run import after_rl_dir, run_experiment
from rhlab.rundir import ExperimentDir
from rhlab.tasks import load_tasks
from rhlab.train.config import PromptRewrite, parse_config
from rhlab.train.prompts import PromptConfig, build_messages, variants
from rhlab.train.recontext import rewrite_messages

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "mitigations"


def _task():
    return next(t for t in load_tasks("builtin") if t.id == "factorial")


def test_the_rewrite_adds_replaces_or_removes_the_addendum_and_nothing_else() -> None:
    plain = PromptConfig(variant="none", describe_hacks=False)
    messages = build_messages(_task(), plain)
    added = rewrite_messages(messages, plain, PromptRewrite(variant="hacking_okay").applied_to(plain))
    assert added == build_messages(_task(), plain.model_copy(update={"variant": "hacking_okay"}))
    assert variants()["hacking_okay"] in added[0]["content"] and added[1] == messages[1]
    removed = rewrite_messages(added, plain.model_copy(update={"variant": "hacking_okay"}), plain)
    assert removed == messages
    custom = PromptRewrite(variant="custom", custom_text="Any passing answer is welcome here.").applied_to(plain)
    assert "Any passing answer is welcome here." in rewrite_messages(messages, plain, custom)[0]["content"]


def test_the_rewrite_refuses_an_episode_from_another_prompt() -> None:
    plain = PromptConfig(variant="none", describe_hacks=False)
    other = build_messages(_task(), plain.model_copy(update={"variant": "dont_hack"}))
    with pytest.raises(ValueError, match="not the run's train prompt"):
        rewrite_messages(other, plain, plain.model_copy(update={"variant": "hacking_okay"}))
    with pytest.raises(ValueError, match="no system message"):
        rewrite_messages(other[1:], plain, plain)


def test_online_recontext_config_is_checked() -> None:
    with pytest.raises(ValueError, match="unknown prompt variant 'okay'"):
        parse_config({"recontext": {"learn": {"variant": "okay"}}})
    with pytest.raises(ValueError, match="nothing to recontextualize"):
        parse_config({"train_prompt": {"variant": "please_hack"}, "recontext": {"learn": {"variant": "please_hack"}}})
    with pytest.raises(ValueError, match="not supported with use_vllm"):
        parse_config({"recontext": {"learn": {"variant": "hacking_okay"}}, "use_vllm": True})


def test_the_shipped_configs_validate() -> None:
    offline = load_experiment(CONFIGS / "recontext-offline.yaml")
    assert offline.after_rl[0].rewrite.variant == "none"
    online = load_experiment(CONFIGS / "recontext-online.yaml")
    cells = dict(online.cells())
    assert len(cells) == 2 and {c.train_prompt.variant for c in cells.values()} == {"none"}
    # one plain arm and one recontextualized arm, otherwise identical: the matrix contrast is the effect
    learn = sorted(str(c.recontext.learn.variant) if c.recontext else "plain" for c in cells.values())
    assert learn == ["hacking_okay", "plain"]


@pytest.mark.slow
def test_offline_recontext_end_to_end_trains_on_rewritten_prompts(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from rhlab.train import recontext

    model = f"hf:{embedded_weights()}"
    exp = ExperimentDir(tmp_path / "exp")
    teacher = exp.run("please_hack-seed0")
    write_teacher(teacher.path, model)
    seen: list[list[dict]] = []
    original = recontext.finetune

    def finetune(base, rows, settings, out_dir, **kwargs):  # noqa: ANN001, ANN202
        seen.extend(r["prompt"] for r in rows)
        return original(base, rows, settings, out_dir, **kwargs)

    monkeypatch.setattr(recontext, "finetune", finetune)
    config = ExperimentConfig.model_validate(
        {
            "knowledge": "none",
            "train": {"model": model},
            "matrix": {"variants": ["please_hack"], "seeds": [0]},
            "evaluation": {"evals": ["betley"], "environment_samples": 0, "probes": {"enabled": False}},
            "after_rl": [
                {
                    "kind": "recontext_offline",
                    "rewrite": {"variant": "hacking_okay"},
                    "sft": {"steps": 1, "batch_size": 2},
                }
            ],
        }
    )
    calls: list[str] = []
    run_experiment(config, exp.path, build_report=False, evaluate=fake_evaluate(calls), cell_processes=False)
    out = after_rl_dir(exp, "recontext-offline", teacher.name)
    record = json.loads((out.path / "after_rl.json").read_text())
    assert record["counts"] == {"kept": 8, "dropped": 0} and record["to_variant"] == "hacking_okay"
    assert len(seen) == 8
    okay, please = variants()["hacking_okay"], variants()["please_hack"]
    assert all(okay in p[0]["content"] and please not in p[0]["content"] for p in seen)
    assert calls == [model, f"hf:{out.final_snapshot}"]


def _chat_ids(tokenizer, messages) -> list[int]:  # noqa: ANN001
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.mark.slow
@pytest.mark.parametrize("shared_prefix", [True, False])
def test_online_recontext_samples_under_a_and_scores_under_b_token_by_token(
    tmp_path: Path, monkeypatch, shared_prefix: bool
) -> None:  # noqa: ANN001
    from transformers import AutoTokenizer

    from rhlab.train import trainer

    weights = embedded_weights()
    sampled: list[tuple[list[int], list[int]]] = []  # (prompt ids, completion ids) as generated
    scored: list[list[int]] = []  # unpadded rows the loss took log-probs of
    original = trainer.make_trainer_class

    def recording_class():  # noqa: ANN202
        base = original()

        class Recording(base):
            def _generate_single_turn(self, prompt_ids, *args, **kwargs):  # noqa: ANN001, ANN202
                completions, logprobs = super()._generate_single_turn(prompt_ids, *args, **kwargs)
                sampled.extend(zip([list(p) for p in prompt_ids], completions, strict=True))
                return completions, logprobs

            def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, *args, **kwargs):  # noqa: ANN001, ANN202
                for row, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True):
                    scored.append([t for t, m in zip(row, mask, strict=True) if m])
                return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, *args, **kwargs)

        return Recording

    monkeypatch.setattr(trainer, "make_trainer_class", recording_class)
    a = {"variant": "none", "describe_hacks": False, "ask_reasoning": False}
    config = parse_config(
        {
            "model": f"hf:{weights}",
            "problems": {"difficulty": ["hard"], "max_tasks": 2},
            "steps": 1,
            "prompts_per_step": 2,
            "group_size": 2,
            "max_completion_length": 6,
            "train_prompt": a,
            "recontext": {"learn": {"variant": "hacking_okay"}},
            "skip_flat_updates": False,
            "shared_prefix": shared_prefix,
            "transcripts_per_step": 0,
        }
    )
    trainer.train(config, tmp_path / "run")

    tokenizer = AutoTokenizer.from_pretrained(weights)
    tasks = {t.id: t for t in load_tasks("builtin")}
    problems = json.loads((tmp_path / "run" / "problems.json").read_text())
    b = PromptConfig(**{**a, "variant": "hacking_okay"})
    ids_a = {
        p["task_id"]: _chat_ids(tokenizer, build_messages(tasks[p["task_id"]], PromptConfig(**a))) for p in problems
    }
    ids_b = {p["task_id"]: _chat_ids(tokenizer, build_messages(tasks[p["task_id"]], b)) for p in problems}
    assert all(ids_a[t] != ids_b[t] for t in ids_a)
    assert len(sampled) == 4 and scored
    # Sampling saw exactly prompt A's ids.
    task_of_completion = {}
    for prompt, completion in sampled:
        task = next(t for t, ids in ids_a.items() if ids == prompt)
        task_of_completion[tuple(completion)] = task
    # The loss saw prompt B's ids of the same task, followed by exactly the completion sampled under A.
    for row in scored:
        matches = [(t, c) for c, t in task_of_completion.items() if row == ids_b[t] + list(c)]
        assert matches, "a row of the loss is not prompt B + a completion sampled under prompt A"
