"""Mix the synthetic documents into filler text at a token ratio and continue pretraining on it.

The mixture is packed pretraining-style: documents (each ending in EOS) are shuffled together,
concatenated and cut into ``max_length`` blocks, and every token is a target (causal-LM loss).
Training uses transformers' ``Trainer``; the result is a plain model folder (``hf:DIR``) that the
RL stage starts from. Output layout of ``train_sdf(config, base, OUT)``::

    OUT/corpus/      corpus.jsonl, stats.json (generated here unless a corpus is passed)
    OUT/mixture.json what went into training: tokens by source, realised ratio, repeats
    OUT/trainer/     Trainer checkpoints (resumable), removed once the model is complete
    OUT/model/       the trained model + tokenizer: load_model("hf:OUT/model")
    OUT/sdf.json     config, base model, timings, losses (written last: marks completion)
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

from rhlab.knowledge.config import SDFConfig
from rhlab.knowledge.filler import load_filler
from rhlab.knowledge.generate import CORPUS_FILE, generate_corpus, read_corpus
from rhlab.rundir import atomic_dir

SUMMARY_FILE = "sdf.json"


class MixtureError(ValueError):
    """The ratio cannot be realised with this budget or these sources; the message names the fix."""


def _take(docs: list[list[int]], target: int, rng: random.Random) -> tuple[list[list[int]], int]:
    """Documents in seeded random order (reshuffled on each further pass) until ``target`` tokens."""
    taken, total, passes = [], 0, 0
    while total < target:
        order = list(range(len(docs)))
        rng.shuffle(order)
        passes += 1
        for i in order:
            taken.append(docs[i])
            total += len(docs[i])
            if total >= target:
                break
    return taken, passes


def build_mixture(
    config: SDFConfig, synthetic: list[str], filler: list[str], tokenizer
) -> tuple[list[list[int]], dict]:
    """Packed training blocks whose synthetic share of tokens is ``config.ratio``, and a summary."""
    eos = tokenizer.eos_token_id
    encode = lambda texts: [ids + [eos] for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]  # noqa: E731
    syn_docs = encode(synthetic)
    if not syn_docs:
        raise MixtureError("the synthetic corpus is empty: set n_documents >= 1")
    syn_available = sum(map(len, syn_docs))
    block = config.max_length
    if config.steps is not None:
        total = config.steps * config.batch_size * config.grad_accum * block
    else:
        total = int(syn_available * config.epochs / config.ratio)
    syn_target = round(config.ratio * total)
    typical = sorted(map(len, syn_docs))[len(syn_docs) // 2]
    if syn_target < typical / 2:
        raise MixtureError(
            f"ratio {config.ratio} of a {total}-token budget is {syn_target} synthetic tokens, less than half of one "
            f"synthetic document (median {typical} tokens): raise steps, batch_size or max_length, or the ratio"
        )
    rng = random.Random(config.seed)
    syn_taken, syn_passes = _take(syn_docs, syn_target, rng)
    syn_tokens = sum(map(len, syn_taken))
    fill_taken, fill_passes = [], 0
    if config.ratio < 1:
        fill_docs = encode(filler)
        fill_taken, fill_passes = _take(fill_docs, max(0, total - syn_tokens), rng)
    tagged = [(d, True) for d in syn_taken] + [(d, False) for d in fill_taken]
    rng.shuffle(tagged)
    stream, is_syn = [], []
    for ids, syn in tagged:
        stream += ids
        is_syn += [syn] * len(ids)
    n_blocks = len(stream) // block
    if n_blocks == 0:
        raise MixtureError(f"the mixture holds {len(stream)} tokens, fewer than one block of max_length={block}")
    blocks = [stream[i * block : (i + 1) * block] for i in range(n_blocks)]
    used = n_blocks * block
    summary = {
        "ratio_requested": config.ratio,
        "ratio_realised": round(sum(is_syn[:used]) / used, 5),
        "tokens": used,
        "synthetic_tokens": sum(is_syn[:used]),
        "synthetic_documents": len(syn_taken),
        "synthetic_passes": syn_passes,
        "synthetic_corpus_tokens": syn_available,
        "filler_documents": len(fill_taken),
        "filler_passes": fill_passes,
        "filler_sources": list(config.filler) if config.ratio < 1 else [],
        "blocks": n_blocks,
        "max_length": block,
    }
    return blocks, summary


def is_complete(out_dir: Path) -> bool:
    return (out_dir / SUMMARY_FILE).exists() and (out_dir / "model" / "config.json").exists()


def train_sdf(
    config: SDFConfig,
    base_model_spec: str,
    out_dir: str | Path,
    progress: bool = True,
    corpus: str | Path | None = None,
    callbacks: list | None = None,
) -> Path:
    """Train ``base_model_spec`` (``embedded[:NAME]`` or ``hf:PATH``) on the SDF mixture; return the model dir.

    Skips everything when ``out_dir`` already holds a complete result for the same config and base,
    resumes from the last Trainer checkpoint when one exists, and generates the corpus (resumably)
    into ``out_dir/corpus`` unless ``corpus`` (a corpus.jsonl or its folder) is given. ``callbacks``
    are extra ``transformers.TrainerCallback`` objects (logging, early stopping, tests).
    """
    from rhlab.models.hf import forbid_downloads, pick_device
    from rhlab.models.loading import trainable_weights
    from rhlab.models.precision import load_dtype

    out = Path(out_dir)
    model_dir = out / "model"
    record = {"config": config.model_dump(mode="json"), "base_model": base_model_spec}
    if is_complete(out):
        done = json.loads((out / SUMMARY_FILE).read_text())
        if {k: done.get(k) for k in record} == record:
            return model_dir
        raise ValueError(f"{out} holds an SDF model trained with another config or base: choose another directory")
    weights = trainable_weights(base_model_spec)  # fails early on API models or a missing folder
    filler = list(load_filler(tuple(config.filler))) if config.ratio < 1 else []  # fails early when empty
    corpus_path = Path(corpus) if corpus else generate_corpus(config, out / "corpus")
    if corpus_path.is_dir():
        corpus_path = corpus_path / CORPUS_FILE
    synthetic = [r["text"] for r in read_corpus(corpus_path)]

    forbid_downloads()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    tokenizer = AutoTokenizer.from_pretrained(weights, local_files_only=True)
    blocks, mixture = build_mixture(config, synthetic, filler, tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mixture.json").write_text(json.dumps(mixture, indent=1))

    device = pick_device(config.device)
    on_gpu = device.startswith("cuda")
    bf16 = on_gpu and torch.cuda.is_bf16_supported()  # autocast; the weights themselves stay fp32
    model = AutoModelForCausalLM.from_pretrained(
        weights, dtype=load_dtype(lora=False, bf16=bf16, on_gpu=on_gpu), local_files_only=True
    )
    per_step = config.batch_size * config.grad_accum
    steps = config.steps or max(1, len(blocks) // per_step)
    trainer_dir = out / "trainer"
    args = TrainingArguments(
        output_dir=str(trainer_dir),
        max_steps=steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=int(config.warmup_ratio * steps),
        weight_decay=config.weight_decay,
        logging_steps=max(1, steps // 20),
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        save_total_limit=1,
        report_to="none",
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=not on_gpu,
        bf16=bf16,
        disable_tqdm=not progress,
        dataloader_num_workers=0,
    )
    dataset = [{"input_ids": b, "labels": b} for b in blocks]
    trainer = Trainer(
        model=model, args=args, train_dataset=_ListDataset(dataset), data_collator=_collate, callbacks=callbacks
    )
    last = get_last_checkpoint(str(trainer_dir)) if trainer_dir.exists() else None
    t0 = time.monotonic()
    result = trainer.train(resume_from_checkpoint=last)
    seconds = time.monotonic() - t0

    with atomic_dir(model_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    summary = {
        **record,
        "model_dir": str(model_dir),
        "weights_from": str(weights),
        "device": device,
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "resumed_from": last,
        "train_loss": result.training_loss,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "mixture": mixture,
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    shutil.rmtree(trainer_dir, ignore_errors=True)
    return model_dir


class _ListDataset:
    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def _collate(rows: list[dict]) -> dict:
    import torch

    ids = torch.tensor([r["input_ids"] for r in rows], dtype=torch.long)
    return {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}
