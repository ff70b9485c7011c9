"""The hf: backend, specified on a tiny random Llama built locally (no download)."""

import json

import pytest
import torch

from rhlab.models import LocalChatModel, ModelError, SamplingParams, load_model, tiny_test_model

HELLO = [{"role": "user", "content": "hello"}]
LONGER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a much longer question here"}]
GREEDY = SamplingParams(temperature=0, max_new_tokens=12)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny_test_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return load_model(f"hf:{tiny_dir}")


def test_local_model_exposes_its_trainable_model_and_tokenizer(tiny, tiny_dir):
    assert isinstance(tiny, LocalChatModel)
    assert tiny.spec == f"hf:{tiny_dir}"
    loss = tiny.model(
        **tiny.tokenizer("abc", return_tensors="pt"), labels=tiny.tokenizer("abc", return_tensors="pt").input_ids
    ).loss
    loss.backward()
    assert any(p.grad is not None for p in tiny.model.parameters())
    tiny.model.zero_grad()


def test_returns_n_completions_per_conversation_in_input_order(tiny):
    out = tiny.generate([HELLO, LONGER, HELLO], SamplingParams(n=3, max_new_tokens=4, seed=0))
    assert [len(row) for row in out] == [3, 3, 3]
    assert all(len(c.token_ids) <= 4 for row in out for c in row)


def test_greedy_answer_does_not_depend_on_batch_neighbours(tiny):
    # Left padding: a short prompt batched with a long one must decode exactly as it does alone.
    alone = tiny.generate([HELLO], GREEDY)[0][0]
    batched = tiny.generate([LONGER, HELLO], GREEDY)[1][0]
    assert batched.token_ids == alone.token_ids
    assert batched.text == alone.text


def test_batch_size_only_changes_how_work_is_split(tiny_dir):
    one_at_a_time = load_model(f"hf:{tiny_dir}", batch_size=1)
    together = load_model(f"hf:{tiny_dir}", batch_size=8)
    convs = [HELLO, LONGER, HELLO]
    assert [r[0].token_ids for r in one_at_a_time.generate(convs, GREEDY)] == [
        r[0].token_ids for r in together.generate(convs, GREEDY)
    ]


def test_same_seed_same_samples_and_different_seed_different_samples(tiny):
    params = SamplingParams(temperature=1.0, max_new_tokens=16, n=2, seed=7)
    first = tiny.generate([HELLO], params)
    again = tiny.generate([HELLO], params)
    other = tiny.generate([HELLO], SamplingParams(temperature=1.0, max_new_tokens=16, n=2, seed=8))
    assert [c.token_ids for c in first[0]] == [c.token_ids for c in again[0]]
    assert [c.token_ids for c in first[0]] != [c.token_ids for c in other[0]]
    assert first[0][0].token_ids != first[0][1].token_ids, "the n samples of one prompt must differ"


def test_seeded_generation_leaves_the_callers_random_state_alone(tiny):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny.generate([HELLO], SamplingParams(max_new_tokens=4, seed=5))
    assert torch.equal(torch.rand(3), expected)


def test_hitting_max_new_tokens_is_reported_as_length(tiny):
    completion = tiny.generate([HELLO], SamplingParams(temperature=0, max_new_tokens=5))[0][0]
    assert completion.finish_reason == "length"
    assert len(completion.token_ids) == 5
    assert tiny.tokenizer.decode(completion.token_ids, skip_special_tokens=True) == completion.text


def test_stop_string_ends_the_completion_and_is_cut_from_the_text(tiny):
    full = tiny.generate([HELLO], SamplingParams(temperature=0, max_new_tokens=24))[0][0].text
    # Random bytes decode to some invalid UTF-8; pick a plain ASCII character as the stop string.
    stop = next(ch for ch in full[3:] if ch.isascii() and ch.isprintable())
    stopped = tiny.generate([HELLO], SamplingParams(temperature=0, max_new_tokens=24, stop=(stop,)))[0][0]
    assert stopped.text == full[: full.index(stop)]
    assert stopped.finish_reason == "stop"
    assert len(stopped.token_ids) < 24


def test_stop_string_is_matched_in_generated_text_only(tiny):
    # The prompt ends with "\n"; a stop of "\n" + first generated char must not fire on the boundary.
    first = tiny.generate([HELLO], SamplingParams(temperature=0, max_new_tokens=8))[0][0].text
    boundary = "\n" + first[0]
    if boundary in first:
        pytest.skip("the generated text itself contains the boundary string")
    completion = tiny.generate([HELLO], SamplingParams(temperature=0, max_new_tokens=8, stop=(boundary,)))[0][0]
    assert completion.text == first
    assert completion.finish_reason == "length"


def test_final_assistant_message_is_continued_not_answered(tiny):
    prefilled = [*HELLO, {"role": "assistant", "content": "def factorial("}]
    prompt = tiny.render(prefilled)
    assert prompt.endswith("def factorial(")
    assert tiny.render(HELLO).endswith("<|im_start|>assistant\n")


def test_lora_adapter_loads_on_top_of_its_base(tiny_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    peft_model.save_pretrained(tmp_path / "adapter")

    model = load_model(f"hf:{tmp_path / 'adapter'}")
    assert type(model.model).__name__ == "PeftModelForCausalLM"
    assert model.generate([HELLO], GREEDY)[0][0].finish_reason in {"stop", "length"}

    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "some-org/not-here"
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="base=PATH_TO_BASE_MODEL"):
        load_model(f"hf:{tmp_path / 'adapter'}")
    assert load_model(f"hf:{tmp_path / 'adapter'}", base=str(tiny_dir)).model is not None


def test_folder_without_tokenizer_names_the_fix(tmp_path):
    folder = tiny_test_model(tmp_path / "bare", with_tokenizer=False)
    with pytest.raises(ModelError, match=r"has no tokenizer: save one .*tokenizer\.save_pretrained"):
        load_model(f"hf:{folder}")


def test_missing_folder_and_folder_without_config_name_the_fix(tmp_path):
    with pytest.raises(ModelError, match="No model directory at"):
        load_model(f"hf:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="has no config.json"):
        load_model(f"hf:{tmp_path / 'empty'}")


def test_tokenizer_without_chat_template_needs_one(tmp_path):
    folder = tiny_test_model(tmp_path / "base", chat_template="")
    with pytest.raises(ModelError, match="no chat template"):
        load_model(f"hf:{folder}")
    plain = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    assert load_model(f"hf:{folder}", chat_template=plain).render(HELLO) == "hello\n"


def test_bad_dtype_or_missing_gpu_names_the_fix(tiny_dir):
    with pytest.raises(ModelError, match="Unknown dtype 'fp8': use one of float32, bfloat16, float16"):
        load_model(f"hf:{tiny_dir}", dtype="fp8")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA GPU is visible: use device='cpu'"):
            load_model(f"hf:{tiny_dir}", device="cuda")
    assert load_model(f"hf:{tiny_dir}", dtype="bfloat16").model.dtype == torch.bfloat16
