"""`rhlab models list` and `rhlab chat` as a person uses them."""

import pytest
import typer
from typer.testing import CliRunner

from rhlab.models import tiny_test_model
from rhlab.models.cli import chat, models_app

app = typer.Typer()
app.add_typer(models_app, name="models")
app.command("chat")(chat)
runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory):
    return f"hf:{tiny_test_model(tmp_path_factory.mktemp('tiny'))}"


def test_models_list_shows_each_backend_and_why_vllm_is_missing():
    result = runner.invoke(app, ["models", "list"], terminal_width=200)
    assert result.exit_code == 0
    for spec in ("embedded", "embedded:gemma3-270m", "hf:PATH", "openai:MODEL@BASE_URL", "vllm:PATH", "scripted"):
        assert spec in result.output
    assert "rhlab[vllm]" in result.output or "In-process vLLM" in result.output


def test_one_shot_chat_prints_the_answer(tiny_spec):
    result = runner.invoke(app, ["chat", "--model", tiny_spec, "-t", "0", "-n", "5", "hello"])
    assert result.exit_code == 0, result.output
    assert "cut at --max-new-tokens" in result.output


def test_interactive_chat_reads_until_an_empty_line(tiny_spec):
    result = runner.invoke(app, ["chat", "--model", tiny_spec, "-n", "3", "--think"], input="hi\nagain\n\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("you>") == 3


def test_bad_spec_is_one_sentence_without_a_traceback():
    result = runner.invoke(app, ["chat", "--model", "nonsense", "hi"])
    assert result.exit_code == 1
    assert "Unknown model spec 'nonsense'" in result.output
    assert "Traceback" not in result.output
