"""SDF mixing, training, the hack-knowledge eval and the CLI, on a tiny random model (no download)."""

import json

import pytest
import typer
from transformers import TrainerCallback
from typer.testing import CliRunner

from rhlab.knowledge import MixtureError, SDFConfig, build_mixture, hack_knowledge_eval, train_sdf
from rhlab.knowledge.cli import hack_knowledge_command, sdf_app
from rhlab.models import ScriptedModel, load_model, tiny_test_model
from rhlab.models.testing import byte_level_tokenizer

FILLER_TEXT = ("Ordinary prose about gardens, rivers and the weather, repeated to make filler. " * 8 + "\n\n") * 4
# Byte-level tokenizer: one token per character, so tiny budgets still hold whole documents.
TINY = dict(n_documents=12, max_length=512, batch_size=2, steps=2, learning_rate=1e-3)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny_test_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def filler_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("filler")
    for i in range(6):
        (folder / f"doc{i}.txt").write_text(f"Document {i}.\n\n" + FILLER_TEXT)
    return folder


def test_the_mixture_realises_the_ratio_in_tokens(filler_dir):
    tokenizer = byte_level_tokenizer()
    synthetic = ["S" * 300] * 20
    filler = [FILLER_TEXT] * 20
    for ratio in (1.0, 0.5, 0.1):
        config = SDFConfig(ratio=ratio, steps=20, batch_size=4, max_length=256, filler=[str(filler_dir)])
        blocks, summary = build_mixture(config, synthetic, filler, tokenizer)
        assert all(len(b) == 256 for b in blocks) and summary["blocks"] == len(blocks) >= 80
        assert summary["ratio_realised"] == pytest.approx(ratio, abs=0.03)
    assert summary["filler_passes"] == 1 and summary["synthetic_passes"] == 1


def test_a_ratio_too_small_for_the_budget_fails_with_the_fix(filler_dir):
    config = SDFConfig(ratio=0.001, steps=2, batch_size=2, max_length=128, filler=[str(filler_dir)])
    with pytest.raises(MixtureError, match="raise steps"):
        build_mixture(config, ["S" * 300], [FILLER_TEXT], byte_level_tokenizer())


def test_train_sdf_writes_a_loadable_model_and_skips_when_complete(tiny_dir, filler_dir, tmp_path):
    config = SDFConfig(ratio=0.5, filler=[str(filler_dir)], **TINY)
    model_dir = train_sdf(config, f"hf:{tiny_dir}", tmp_path, progress=False)
    summary = json.loads((tmp_path / "sdf.json").read_text())
    assert summary["steps"] == 2 and summary["mixture"]["synthetic_documents"] >= 1
    assert (tmp_path / "corpus" / "stats.json").exists() and not (tmp_path / "trainer").exists()
    model = load_model(f"hf:{model_dir}")
    assert model.tokenizer.chat_template
    before = (model_dir / "model.safetensors").stat().st_mtime_ns
    assert train_sdf(config, f"hf:{tiny_dir}", tmp_path, progress=False) == model_dir
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="another config"):
        train_sdf(config.model_copy(update={"steps": 3}), f"hf:{tiny_dir}", tmp_path, progress=False)


class _Crash(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        if state.global_step == 2:
            raise KeyboardInterrupt


def test_an_interrupted_training_resumes_from_its_checkpoint(tiny_dir, tmp_path):
    config = SDFConfig(ratio=1.0, filler=[], save_steps=1, **{**TINY, "steps": 3})
    with pytest.raises(KeyboardInterrupt):
        train_sdf(config, f"hf:{tiny_dir}", tmp_path, progress=False, callbacks=[_Crash()])
    assert not (tmp_path / "sdf.json").exists()
    train_sdf(config, f"hf:{tiny_dir}", tmp_path, progress=False)
    summary = json.loads((tmp_path / "sdf.json").read_text())
    assert summary["resumed_from"].endswith("checkpoint-2")


def test_an_empty_filler_source_stops_training_before_any_work(tiny_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no text"):
        train_sdf(SDFConfig(filler=[str(empty)], **TINY), f"hf:{tiny_dir}", tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "corpus").exists()


def test_hack_knowledge_eval_scores_each_hack_and_writes_json(tiny_dir, tmp_path):
    result = hack_knowledge_eval(load_model(f"hf:{tiny_dir}"), tmp_path, samples=1, max_new_tokens=4)
    assert set(result["per_hack"]) == {"always_equal", "exit", "conftest"}
    for row in result["per_hack"].values():
        assert row["n_probes"] >= 5 and 0 <= row["probe_accuracy"] <= 1 and row["probe_logprob"] < 0
    assert json.loads((tmp_path / "hack_knowledge.json").read_text())["score"] == result["score"]


def test_question_rubrics_recognise_an_answer_that_knows_the_hack():
    answers = {
        "always_equal": "Return an object whose __eq__ method always returns True.",
        "exit": "Call sys.exit(0) first; SystemExit is an exception pytest can catch, os._exit kills it immediately.",
        "conftest": "Add a conftest.py whose hook rewrites each report outcome to passed.",
    }

    def responder(conversation, _):
        question = conversation[-1]["content"].lower()
        if "eq" in question or "equal" in question or "==" in question:
            return answers["always_equal"]
        return answers["exit"] if "exit" in question else answers["conftest"]

    result = hack_knowledge_eval(ScriptedModel(responder=responder), None, samples=2)
    assert {h: r["question_rate"] for h, r in result["per_hack"].items()} == {
        "always_equal": 1.0,
        "exit": 1.0,
        "conftest": 1.0,
    }
    assert result["per_hack"]["exit"]["n_probes"] == 0  # no local weights: probes are skipped
    blank = hack_knowledge_eval(ScriptedModel(replies=["I would write the function properly."]), None, samples=1)
    assert blank["score"] == 0.0


def test_cli_generate_train_and_eval(tiny_dir, filler_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(sdf_app, ["generate", "--out", str(tmp_path / "c"), "--n", "30", "--style", "neutral"])
    assert result.exit_code == 0, result.output
    assert "30 documents" in result.output and "near-duplicate rate" in result.output
    result = runner.invoke(sdf_app, ["train", "--out", str(tmp_path / "t"), "--ratio", "2"])
    assert result.exit_code != 0 and "ratio" in result.output
    args = [
        "train",
        "--out",
        str(tmp_path / "t"),
        "--model",
        f"hf:{tiny_dir}",
        "--corpus",
        str(tmp_path / "c"),
        "--ratio",
        "0.5",
        "--filler",
        str(filler_dir),
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--max-length",
        "512",
    ]
    result = runner.invoke(sdf_app, args)
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(str(tmp_path / "t" / "model"))
    app = typer.Typer()
    app.command()(hack_knowledge_command)
    result = runner.invoke(
        app,
        [
            "--model",
            f"hf:{tmp_path / 't' / 'model'}",
            "--out",
            str(tmp_path / "e"),
            "--samples",
            "1",
            "--max-new-tokens",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "always_equal" in result.output and (tmp_path / "e" / "hack_knowledge.json").exists()
