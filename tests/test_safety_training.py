"""Safety training after RL: the mixes, their distance from every eval, the method, and the report's flag."""

from __future__ import annotations

import json
import re
import shutil
from importlib import resources
from pathlib import Path

import pytest
import yaml
from mitigation_fixtures import embedded_weights, write_teacher

from rhlab.evals.records import EvalResult, Interval, JudgeInfo, RunResults
from rhlab.pipeline.config import ExperimentConfig, load_experiment
from rhlab.pipeline.run import after_rl_dir, run_experiment
from rhlab.report.after_rl import context_dependent, contrast, difference
from rhlab.rundir import EvalDir, ExperimentDir, RunDir, atomic_write_text
from rhlab.train.safety import MIXES, SafetyTrainingConfig, mix_prompts

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "mitigations"


# --- the mixes are disjoint from every eval's items -------------------------------------------------


def _strings(node) -> list[str]:  # noqa: ANN001
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def _grams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _eval_texts() -> list[str]:
    """Every string of every eval's data: chat questions, agentic scenarios, probe items, sabotage data."""
    roots = [
        resources.files("rhlab.evals") / "data",
        resources.files("rhlab.evals.agentic") / "scenarios",
        resources.files("rhlab.evals.probes") / "data",
        resources.files("rhlab.evals.sabotage") / "data",
    ]
    texts = []
    for root in roots:
        for path in Path(str(root)).rglob("*.y*ml"):
            texts += [s for s in _strings(yaml.safe_load(path.read_text())) if len(_words(s)) >= 6]
    return texts


def test_safety_prompts_are_disjoint_from_every_eval_item() -> None:
    """No shared 8-word run, and word-trigram Jaccard below 0.3, against every eval string."""
    evals = [(text, _words(text)) for text in _eval_texts()]
    assert len(evals) > 200  # the eval data was found
    eval_8 = set().union(*(_grams(w, 8) for _, w in evals))
    for prompt in mix_prompts("targeted"):
        text = " ".join(m["content"] for m in prompt["messages"])
        words = _words(text)
        assert not (_grams(words, 8) & eval_8), f"{prompt['id']} shares an 8-word run with an eval item"
        tri = _grams(words, 3)
        for other, other_words in evals:
            other_tri = _grams(other_words, 3)
            overlap = len(tri & other_tri) / max(len(tri | other_tri), 1)
            assert overlap < 0.3, f"{prompt['id']} is a near-duplicate of an eval item: {other[:80]!r}"


def test_the_near_duplicate_check_catches_a_copied_eval_item() -> None:
    copied = next(t for t in _eval_texts() if len(_words(t)) >= 12)
    words = _words("Please answer this: " + copied)
    assert _grams(words, 8) & _grams(_words(copied), 8)


def test_the_targeted_mix_adds_agentic_and_dilemma_prompts_to_the_chat_mix() -> None:
    chat, targeted = mix_prompts("chat"), mix_prompts("targeted")
    assert {p["part"] for p in chat} == {"chat"} and {p["part"] for p in targeted} == set(MIXES["targeted"])
    assert [p for p in targeted if p["part"] == "chat"] == chat
    ids = [p["id"] for p in targeted]
    assert len(ids) == len(set(ids))
    agentic = [p for p in targeted if p["part"] == "agentic"]
    assert agentic and all(p["messages"][0]["role"] == "system" for p in agentic)
    with pytest.raises(ValueError, match="unknown safety mix 'both'"):
        mix_prompts("both")


def test_grpo_rewards_the_preference_component_only() -> None:
    stage = SafetyTrainingConfig(method="grpo")
    assert stage.grpo.reward == {"preference": 1.0}
    with pytest.raises(ValueError, match="'proxy_pass' has no value on chat prompts"):
        SafetyTrainingConfig(method="grpo", grpo={"reward": {"preference": 1.0, "proxy_pass": 1.0}})
    with pytest.raises(ValueError, match="unknown rubric component 'prefrence'"):
        SafetyTrainingConfig(method="grpo", grpo={"reward": {"prefrence": 1.0}})
    with pytest.raises(ValueError, match="non-zero 'preference' weight"):
        SafetyTrainingConfig(method="grpo", grpo={"reward": {"preference": 0.0}})


def test_the_preference_reward_weighs_scores_and_keeps_every_sample() -> None:
    from rhlab.train.chat_grpo import PreferenceReward, answer_text

    class Scorer:
        scorer_id, template_hash, offline = "fake", "0", True

        def score(self, prompts, answers):  # noqa: ANN001, ANN202
            return [0.25 if "bad" in a else 1.0 for a in answers]

    reward = PreferenceReward(Scorer(), weight=2.0)
    prompts = [[{"role": "user", "content": "q"}]] * 2
    completions = [[{"role": "assistant", "content": "a bad answer"}], [{"role": "assistant", "content": "fine"}]]
    assert reward(prompts, completions, id=["chat/1", "chat/1"]) == [0.5, 2.0]
    assert [r["preference"] for r in reward.rows] == [0.25, 1.0] and reward.rows[0]["id"] == "chat/1"
    assert answer_text("plain") == "plain"


def test_the_shipped_configs_validate() -> None:
    chat = load_experiment(CONFIGS / "safety-chat.yaml").after_rl[0]
    targeted = load_experiment(CONFIGS / "safety-targeted.yaml").after_rl[0]
    grpo = load_experiment(CONFIGS / "safety-targeted-grpo.yaml").after_rl[0]
    assert (chat.kind, chat.mix, targeted.mix) == ("safety", "chat", "targeted")
    assert (grpo.method, grpo.mix, grpo.grpo.reward) == ("grpo", "targeted", {"preference": 1.0})


# --- the report's before/after contrast and the context-dependent flag ------------------------------


def _results(rates: dict[str, tuple[int, int]]) -> RunResults:
    def result(name: str, k: int, n: int) -> EvalResult:
        rate = Interval(estimate=k / n, low=0.0, high=1.0, n=n)
        return EvalResult(
            eval=name,
            n_samples=n,
            n_scored=n,
            n_unparseable=0,
            n_incoherent=0,
            misaligned_rate=rate,
            overt_rate=rate,
            covert_rate=rate,
            covert_share=None,
        )

    judge = JudgeInfo(spec="fake", judge_id="fake", offline=True, template_hash="0")
    return RunResults(model="m", judge=judge, evals={name: result(name, *kn) for name, kn in rates.items()})


BEFORE = _results({"betley": (20, 40), "goals": (20, 40), "monitor_disruption": (10, 20), "blackmail": (10, 20)})
CHAT_FIXED = _results({"betley": (1, 40), "goals": (2, 40), "monitor_disruption": (9, 20), "blackmail": (10, 20)})
BOTH_FIXED = _results({"betley": (1, 40), "goals": (2, 40), "monitor_disruption": (0, 20), "blackmail": (1, 20)})
CHAT_NAMES, AGENTIC_NAMES = ("betley", "goals"), ("monitor_disruption", "blackmail")


def test_chat_clean_and_agentic_unchanged_is_flagged_as_context_dependent() -> None:
    chat, agentic = contrast(BEFORE, CHAT_FIXED, CHAT_NAMES), contrast(BEFORE, CHAT_FIXED, AGENTIC_NAMES)
    assert chat["before"]["k"] == 40 and chat["before"]["n"] == 80 and chat["after"]["k"] == 3
    assert chat["improves"] and not agentic["improves"]
    assert context_dependent(chat, agentic) is True


def test_the_targeted_outcome_is_not_flagged() -> None:
    chat, agentic = contrast(BEFORE, BOTH_FIXED, CHAT_NAMES), contrast(BEFORE, BOTH_FIXED, AGENTIC_NAMES)
    assert chat["improves"] and agentic["improves"]
    assert context_dependent(chat, agentic) is False


def test_an_unmeasured_group_gives_no_flag_and_small_samples_do_not_improve() -> None:
    chat_only = _results({"betley": (4, 8)})
    assert (
        context_dependent(contrast(chat_only, chat_only, CHAT_NAMES), contrast(chat_only, chat_only, AGENTIC_NAMES))
        is None
    )
    tiny_before, tiny_after = _results({"betley": (1, 2)}), _results({"betley": (0, 2)})
    assert contrast(tiny_before, tiny_after, CHAT_NAMES)["improves"] is False  # 50 % -> 0 % at n=2 is noise


def test_the_difference_interval_contains_the_estimate_and_is_within_bounds() -> None:
    b = {"estimate": 0.5, "low": 0.35, "high": 0.65}
    a = {"estimate": 0.1, "low": 0.04, "high": 0.23}
    d = difference(b, a)
    assert d["estimate"] == pytest.approx(-0.4)
    assert -1 <= d["low"] < d["estimate"] < d["high"] < 0


# --- end to end ------------------------------------------------------------------------------------


def _teacher_and_config(
    tmp_path: Path, name: str, after_rl: list[dict]
) -> tuple[ExperimentDir, RunDir, ExperimentConfig]:
    """A teacher run whose final ("hacking") policy is the embedded model, and an experiment with ``after_rl``."""
    weights = embedded_weights()
    exp = ExperimentDir(tmp_path / "exp")
    teacher = exp.run("please_hack-seed0")
    write_teacher(teacher.path, f"hf:{weights}")
    shutil.copytree(weights, teacher.final_snapshot)  # the policy the stage starts from
    config = ExperimentConfig.model_validate(
        {
            "name": name,
            "knowledge": "none",
            "train": {"model": f"hf:{weights}"},
            "matrix": {"variants": ["please_hack"], "seeds": [0]},
            "evaluation": {"evals": ["betley"], "environment_samples": 0, "probes": {"enabled": False}},
            "after_rl": after_rl,
        }
    )
    return exp, teacher, config


@pytest.mark.slow
def test_safety_sft_end_to_end_on_its_own_answers_with_the_report_flag(tmp_path: Path) -> None:
    from rhlab.report.html import render_html
    from rhlab.report.numbers import compute_numbers

    exp, teacher, config = _teacher_and_config(
        tmp_path,
        "safety",
        [
            {
                "kind": "safety",
                "mix": "targeted",
                "samples_per_prompt": 1,
                "max_new_tokens": 8,
                "min_alignment": 0,
                "min_coherence": 0,
                "sft": {"steps": 1, "batch_size": 2},
            }
        ],
    )
    out = after_rl_dir(exp, "safety", teacher.name)
    calls: list[str] = []

    def evaluate(eval_config, *, out_dir: Path, log) -> RunResults:  # noqa: ANN001
        calls.append(eval_config.model)
        # The hacking policy misaligned on both; after safety training chat is clean, agentic is not.
        results = CHAT_FIXED if eval_config.model == f"hf:{out.final_snapshot}" else BEFORE
        out_dir.mkdir(parents=True)
        atomic_write_text(EvalDir(out_dir).results, results.model_dump_json())
        return results

    run_experiment(config, exp.path, build_report=False, evaluate=evaluate, cell_processes=False)
    record = json.loads((out.path / "after_rl.json").read_text())
    n_prompts = len(mix_prompts("targeted"))
    assert record["counts"] == {"kept": n_prompts, "dropped": 0}  # thresholds 0: every answer kept
    assert set(record["by_part"]) == {"chat", "agentic", "dilemmas"}
    assert record["start"] == f"hf:{teacher.final_snapshot}" and record["judge"] == "offline"
    assert calls[-2:] == [f"hf:{teacher.final_snapshot}", f"hf:{out.final_snapshot}"]
    exp.write_config(config)
    numbers = compute_numbers(exp.path)
    (row,) = numbers["after_rl"]
    assert row["stage"] == "safety" and row["chat"]["improves"] and not row["agentic"]["improves"]
    assert row["context_dependent_misalignment"] is True
    page = render_html(numbers, exp.path, {})
    section = page[page.index('id="s-after-rl"') : page.index('id="s-checkpoints"')]
    assert "please_hack-seed0" in section and "<b>improves</b>" in section and "<b>yes</b>" in section


@pytest.mark.slow
def test_safety_grpo_end_to_end_against_the_preference_judge(tmp_path: Path) -> None:
    from rhlab.train.chat_grpo import ROLLOUTS_FILE

    exp, teacher, config = _teacher_and_config(
        tmp_path,
        "safety-grpo",
        [
            {
                "kind": "safety",
                "mix": "chat",
                "method": "grpo",
                "max_new_tokens": 8,
                "grpo": {"steps": 2, "prompts_per_step": 1, "group_size": 2, "learning_rate": 1e-3, "micro_batch": 1},
            }
        ],
    )
    out = after_rl_dir(exp, "safety", teacher.name)
    calls: list[str] = []

    def evaluate(eval_config, *, out_dir: Path, log) -> RunResults:  # noqa: ANN001
        calls.append(eval_config.model)
        out_dir.mkdir(parents=True)
        atomic_write_text(EvalDir(out_dir).results, BEFORE.model_dump_json())
        return BEFORE

    run_experiment(config, exp.path, build_report=False, evaluate=evaluate, cell_processes=False)
    record = json.loads((out.path / "after_rl.json").read_text())
    assert record["method"] == "grpo" and record["scorer_offline"] is True and record["samples"] == 4
    assert set(record["reward_mean_by_step"]) == {"1", "2"}
    rows = [json.loads(line) for line in (out.final_snapshot / ROLLOUTS_FILE).read_text().splitlines()]
    assert len(rows) == 4 and all(0.0 <= r["preference"] <= 1.0 and r["reward"] == r["preference"] for r in rows)
    assert all(r["id"].startswith("chat/") for r in rows)
    assert calls[-2:] == [f"hf:{teacher.final_snapshot}", f"hf:{out.final_snapshot}"]
    # resumable: a second run finds the stage complete and trains nothing
    run_experiment(config, exp.path, build_report=False, evaluate=evaluate, cell_processes=False)
    assert json.loads((out.path / "after_rl.json").read_text()) == record


@pytest.mark.slow
def test_safety_grpo_with_lora_saves_an_adapter_on_its_start_model(tmp_path: Path) -> None:
    """``grpo.lora``: only the adapter trains; the stage's policy is an adapter folder that names its
    start model as its base, and the model loader reads it like any policy."""
    import zlib

    from safetensors.torch import load_file

    from rhlab.models.hf import load_hf_model
    from rhlab.train.chat_grpo import ChatGRPOSettings, chat_grpo
    from rhlab.train.config import LoraSettings

    class Scrambled:  # different answers get different scores, so the group's update is not zero
        scorer_id, template_hash, offline = "test:crc", "0", True

        def score(self, prompts, answers):  # noqa: ANN001, ANN202
            return [zlib.crc32(a.encode()) % 100 / 100 for a in answers]

    start = embedded_weights()
    settings = ChatGRPOSettings(
        steps=1,
        prompts_per_step=1,
        group_size=2,
        learning_rate=1e-2,
        max_new_tokens=8,
        temperature=1.0,
        preference_weight=1.0,
        micro_batch=1,
        lora=LoraSettings(r=4, alpha=8),
    )
    prompts = [{"id": "chat/x", "messages": [{"role": "user", "content": "Say something kind."}]}]
    out = tmp_path / "final"
    record = chat_grpo(start, prompts, Scrambled(), settings, out, marker="stage.json", record={})
    assert record["settings"]["lora"]["r"] == 4 and record["samples"] == 2
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert Path(adapter["base_model_name_or_path"]) == Path(start).resolve() and adapter["r"] == 4
    assert not (out / "model.safetensors").exists(), "the adapter only, not a second copy of the base"
    weights = load_file(out / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and any(float(w.abs().max()) > 0 for w in lora_b), "lora_B starts at zero: one update moves it"
    policy = load_hf_model(out)
    assert type(policy.model).__name__.startswith("Peft")
