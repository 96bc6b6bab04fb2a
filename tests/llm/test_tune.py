import json
import time
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from gkd.config import LLMConfig, TeacherConfig
from gkd.errors import ConfigError, GkdError
from gkd.llm.tune import (IGNORE, MicroBatches, _summary, epoch_ends, load_tuned, lr_factor, pad_batch, param_groups,
                          shard_indices, tokenize_examples, tune_teacher)

WARM = ["red", "orange", "yellow", "pink"]
COOL = ["blue", "green", "purple", "teal"]
FILLER = ["apple", "car", "house", "shirt", "ball"]
WORDS = WARM + COOL + FILLER + "### instruction input response : is the colour of this warm or cool ?".split()


def make_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<unk>": 0, "<pad>": 1, "<s>": 2, "</s>": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])  # BOS, like Llama
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   bos_token="<s>", eos_token="</s>")


def colour_examples() -> list[dict]:
    """40 prompts naming a colour; the response is its class (warm / cool)."""
    out = []
    for i in range(40):
        colour = (WARM + COOL)[i % 8]
        thing = FILLER[i % 5]
        out.append({
            "prompt": f"### instruction : is the colour of this {thing} warm or cool ? ### input : {colour} {thing} "
                      f"### response :",
            "response": "warm" if colour in WARM else "cool",
        })
    return out


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    """A random 2-layer Llama (hidden 64) and its word-level tokenizer, saved as a local HF dir."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = make_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                         max_position_embeddings=128, pad_token_id=1, bos_token_id=2,
                                         eos_token_id=3))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_tokenize_masks_prompt_and_truncates_it_from_the_left():
    tok = make_tokenizer()
    ids = {w: tok.convert_tokens_to_ids(w) for w in ["<s>", "</s>", "red", "apple", "is", "warm", "cool"]}
    ex = [{"prompt": "red apple is", "response": "warm"}]
    row = tokenize_examples(tok, ex, max_len=64)[0]
    assert row["input_ids"] == [ids["<s>"], ids["red"], ids["apple"], ids["is"], ids["warm"], ids["</s>"]]
    assert row["labels"] == [IGNORE] * 4 + [ids["warm"], ids["</s>"]]

    # too long: the prompt loses its left side (BOS kept), the response stays whole
    row = tokenize_examples(tok, ex, max_len=4)[0]
    assert row["input_ids"] == [ids["<s>"], ids["is"], ids["warm"], ids["</s>"]]
    assert row["labels"] == [IGNORE, IGNORE, ids["warm"], ids["</s>"]]
    with pytest.raises(ConfigError, match="max_len=3"):
        tokenize_examples(tok, ex, max_len=3)

    rows = tokenize_examples(tok, ex + [{"prompt": "is", "response": "cool"}], max_len=64)
    batch = pad_batch(rows, pad_id=tok.pad_token_id)
    assert batch["input_ids"][1].tolist() == [ids["<s>"], ids["is"], ids["cool"], ids["</s>"], 1, 1]
    assert batch["labels"][1].tolist() == [IGNORE, IGNORE, ids["cool"], ids["</s>"], IGNORE, IGNORE]
    assert batch["attention_mask"].tolist() == [[1] * 6, [1, 1, 1, 1, 0, 0]]


def test_classification_rows_keep_the_label_and_cut_the_prompt_from_the_left():
    tok = make_tokenizer()
    ids = {w: tok.convert_tokens_to_ids(w) for w in ["<s>", "red", "apple", "is"]}
    rows = tokenize_examples(tok, [{"prompt": "red apple is", "label": 1}, {"prompt": "is", "label": 0}], max_len=3)
    assert rows[0] == {"input_ids": [ids["<s>"], ids["apple"], ids["is"]], "label": 1}  # BOS kept, left cut
    assert rows[1] == {"input_ids": [ids["<s>"], ids["is"]], "label": 0}
    batch = pad_batch(rows, pad_id=tok.pad_token_id)
    assert batch["labels"].tolist() == [1, 0] and batch["labels"].dtype == torch.long
    assert batch["input_ids"][1].tolist() == [ids["<s>"], ids["is"], tok.pad_token_id]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


def test_lr_schedule_warms_up_then_decays_and_epochs_end_on_the_right_step():
    total, warmup = 20, 4
    cos = [lr_factor(s, total, warmup, "cosine") for s in range(total)]
    assert cos[:4] == [0.25, 0.5, 0.75, 1.0] and cos[4] == 1.0
    assert all(a >= b for a, b in zip(cos[4:], cos[5:])) and 0 < cos[-1] < 0.02
    lin = [lr_factor(s, total, 0, "linear") for s in range(total)]
    assert lin[0] == 1.0 and lin[10] == pytest.approx(0.5) and lin[-1] == pytest.approx(0.05)
    assert {lr_factor(s, total, 0, "constant") for s in range(total)} == {1.0}
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(5, total, 0, "step")
    # 5 micro-batches per epoch, 2 per optimizer step: steps 3 (micro 6) and 5 (micro 10) finish epochs
    assert [d for d in range(1, 8) if epoch_ends(d, 2, 5)] == [3, 5]
    assert [d for d in range(1, 8) if epoch_ends(d, 1, 3)] == [3, 6]


def test_head_parameters_get_their_own_learning_rate():
    head = torch.nn.Module()
    head.score = torch.nn.Linear(4, 2)
    head.body = torch.nn.Linear(4, 4)
    head.frozen = torch.nn.Linear(4, 4).requires_grad_(False)
    groups = param_groups(head, lr=1e-4, head_lr=1e-2)
    assert [(g["lr"], len(g["params"])) for g in groups] == [(1e-4, 2), (1e-2, 2)]
    assert groups[1]["params"][0] is head.score.weight
    assert [(g["lr"], len(g["params"])) for g in param_groups(head, 1e-4, None)] == [(1e-4, 4)]


def test_best_val_epoch_is_kept_and_ties_go_to_the_later_one():
    class Ckpt:
        def __init__(self, path):
            self.path = path

    class Result:
        checkpoint = Ckpt("/r/c4")
        metrics = {"step": 4, "val_acc": 0.5}
        best_checkpoints = [(Ckpt("/r/c3"), {"step": 3, "val_acc": 0.7}), (Ckpt("/r/c1"), {"step": 1}),
                            (Ckpt("/r/c2"), {"step": 2, "val_acc": 0.7}), (Ckpt("/r/c4"), metrics)]

    best = _summary(Result(), "best_val")
    assert best["checkpoint_path"] == "/r/c3" and best["chosen"]["step"] == 3
    assert best["adapter_dir"] == "/r/c3/model" and [h["step"] for h in best["history"]] == [1, 2, 3, 4]
    assert _summary(Result(), "last")["checkpoint_path"] == "/r/c4"


def test_shards_cover_every_example_and_micro_batches_replay_by_index():
    shards = [shard_indices(5, r, 2) for r in range(2)]
    assert shards == [[0, 2, 4], [1, 3, 0]]  # equal length: the last rank wraps around
    a, b = MicroBatches(10, 4, seed=0, rank=1), MicroBatches(10, 4, seed=0, rank=1)
    assert a.per_epoch == 3
    assert sorted(torch.cat([torch.as_tensor(a[m]) for m in range(3)]).tolist()) == list(range(10))
    assert b[4].tolist() == a[4].tolist()  # a resumed stream jumps straight to micro-batch 4


def test_tuning_never_builds_deepspeeds_shm_op(monkeypatch):
    """DeepSpeed's CPU torch backend JIT-compiles its shared-memory all-reduce op (~90 s on 2 cores) unless the
    op is marked incompatible; only tensor-parallel inference uses it, so train_loop marks it."""
    import importlib

    import deepspeed.ops
    from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder

    from gkd.llm.tune import skip_shm_comm_op

    def build(self, verbose=False):
        raise AssertionError("deepspeed_shm_comm would be JIT-compiled")

    monkeypatch.setattr(ShareMemCommBuilder, "load", build)
    monkeypatch.setitem(deepspeed.ops.__compatible_ops__, "deepspeed_shm_comm", True)
    skip_shm_comm_op()
    assert importlib.import_module("deepspeed.comm.torch").build_shm_op() is None


def _teacher(**kw) -> TeacherConfig:
    # class-name tuning at a constant rate unless a test asks otherwise: a resumed run then repeats the losses of
    # an uninterrupted one whatever its total step count (a schedule depends on it)
    base = dict(num_workers=2, num_cpus_per_worker=1, batch_size=4, lora_r=8, lora_alpha=16, lora_dropout=0.1,
                max_failures=0, seed=0, scoring="names", lr_schedule="constant", warmup_ratio=0.0)
    return TeacherConfig(**{**base, **kw})


def _logits(model, tokenizer, text="### input : red car ### response :"):
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits


@pytest.mark.ray
@pytest.mark.slow
def test_lora_zero2_learns_checkpoints_and_resumes(ray_local, tiny_llama, tmp_path):
    llm = LLMConfig(model=str(tiny_llama), dtype="float32", torch_threads=1)
    kw = dict(examples=colour_examples(), model_path=tiny_llama, llm_cfg=llm, storage_path=tmp_path)

    def tune(name: str, max_steps: int) -> tuple[dict, float]:
        t0 = time.perf_counter()
        cfg = _teacher(zero_stage=2, max_steps=max_steps, checkpoint_every=2, lr=1e-2)
        return tune_teacher(cfg=cfg, name=name, **kw), time.perf_counter() - t0

    straight, t_straight = tune("straight", 8)
    first, t_first = tune("lora", 4)
    assert first["metrics"]["step"] == 4 and first["metrics"]["start_step"] == 0
    assert [m["step"] for m in first["history"]] == [2, 4]
    ckpt = Path(first["checkpoint_path"])
    shards = ckpt / "deepspeed" / "step4"
    assert (ckpt / "deepspeed" / "latest").read_text() == "step4"
    assert len(list(shards.glob("*zero_pp_rank_0_*optim_states.pt"))) == 1  # rank 0's optimizer shard
    assert len(list(shards.glob("*zero_pp_rank_1_*optim_states.pt"))) == 1  # rank 1's, merged by Ray
    assert (Path(first["adapter_dir"]) / "adapter_config.json").is_file()
    assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == 4

    # same storage_path/name, more steps: Ray hands the step-4 checkpoint back, training goes on from it
    second, t_second = tune("lora", 8)
    m = second["metrics"]
    assert m["start_step"] == 4 and m["step"] == 8
    # every 2 steps, plus the end of epoch 1 (40 prompts / 2 workers / batch 4 = 5 steps per epoch)
    assert [h["step"] for h in second["history"]] == [2, 4, 5, 6, 8]
    assert m["first_loss"] == first["metrics"]["first_loss"]  # carried over in trainer_state.json
    # weights, optimizer state and batch order all came back: the same losses as one uninterrupted run
    assert [h["loss"] for h in second["history"]] == pytest.approx([h["loss"] for h in straight["history"]],
                                                                   rel=1e-5)
    print(f"\nLoRA ZeRO-2: loss step 1 {m['first_loss']:.3f} -> steps 7-8 {m['loss']:.3f}; 8 steps "
          f"{t_straight:.1f} s; 4 steps {t_first:.1f} s + resumed steps 5-8 {t_second:.1f} s")
    assert m["loss"] < 0.85 * m["first_loss"]

    # a finished run asked again trains nothing and hands back its latest checkpoint
    again, t_again = tune("lora", 8)
    assert again["checkpoint_path"] == second["checkpoint_path"] and again["metrics"]["step"] == 8
    print(f"finished run asked again: {t_again:.1f} s")
    with pytest.raises(ConfigError, match="checkpointed by 2 workers"):  # ZeRO shards are per rank
        tune_teacher(cfg=_teacher(num_workers=1, max_steps=8), name="lora", **kw)

    tuned = load_tuned(second["adapter_dir"], tiny_llama)
    base = LlamaForCausalLM.from_pretrained(tiny_llama)
    assert type(tuned) is LlamaForCausalLM  # merged: no peft wrapper left
    tok = make_tokenizer()
    assert not torch.allclose(_logits(tuned, tok), _logits(base, tok), atol=1e-4)


@pytest.mark.ray
@pytest.mark.slow
def test_full_zero3_checkpoint_loads_as_plain_hf_model(ray_local, tiny_llama, tmp_path):
    llm = LLMConfig(model=str(tiny_llama), dtype="float32", torch_threads=1)
    t0 = time.perf_counter()
    out = tune_teacher(colour_examples(), tiny_llama, _teacher(finetune="full", zero_stage=3, max_steps=2,
                                                                checkpoint_every=2, lr=1e-3),
                       llm, tmp_path, "full")
    print(f"\nfull FT ZeRO-3, 2 steps: {time.perf_counter() - t0:.1f} s, {out['metrics']}")
    shards = Path(out["checkpoint_path"]) / "deepspeed" / "step2"
    for rank in (0, 1):  # ZeRO-3: each rank wrote its own parameter and optimizer partitions
        assert len(list(shards.glob(f"*zero_pp_rank_{rank}_*"))) == 2

    tuned = load_tuned(out["adapter_dir"], tiny_llama)
    base = LlamaForCausalLM.from_pretrained(tiny_llama)
    want = {k: v.shape for k, v in base.state_dict().items()}
    assert {k: v.shape for k, v in tuned.state_dict().items()} == want  # gathered, not empty partitions
    tok = make_tokenizer()
    diff = (_logits(tuned, tok) - _logits(base, tok)).abs().max().item()
    assert diff > 1e-3, diff


@pytest.mark.ray
@pytest.mark.slow
def test_head_lora_learns_reports_val_per_epoch_and_keeps_the_best(ray_local, tiny_llama, tmp_path):
    """The `head` read-out (a classification head; full fine-tuning under ZeRO-2, which this 2-layer random Llama
    needs to learn the task), 6 epochs, val accuracy / ECE after each one, the best epoch kept."""
    from transformers import LlamaForSequenceClassification

    from gkd.llm.score import classify_prompts

    llm = LLMConfig(model=str(tiny_llama), dtype="float32", torch_threads=1)
    examples = [{"prompt": e["prompt"], "label": int(e["response"] == "warm")} for e in colour_examples()]
    val = examples[::4]
    cfg = _teacher(scoring="head", finetune="full", zero_stage=2, epochs=6, lr=3e-3, head_lr=3e-2,
                   checkpoint_every=100, lr_schedule="cosine", warmup_ratio=0.1)
    out = tune_teacher(examples, tiny_llama, cfg, llm, tmp_path, "head", val_examples=val, num_classes=2)
    epochs = [h for h in out["history"] if "val_acc" in h]
    assert [round(h["epoch"]) for h in epochs] == [1, 2, 3, 4, 5, 6] and all(h["val_nodes"] == 10 for h in epochs)
    assert out["chosen"]["val_acc"] == max(h["val_acc"] for h in epochs)
    tuned = load_tuned(out["adapter_dir"], tiny_llama)
    assert type(tuned) is LlamaForSequenceClassification and tuned.config.num_labels == 2
    tok = make_tokenizer()
    logits, _ = classify_prompts(tuned, tok, [v["prompt"] for v in val])
    acc = float((logits.argmax(1).numpy() == [v["label"] for v in val]).mean())
    assert acc == pytest.approx(out["chosen"]["val_acc"])  # the kept checkpoint is the one val scored
    print(f"\nhead read-out: val acc per epoch {[h['val_acc'] for h in epochs]}, loss {[h['loss'] for h in epochs]}")
    assert out["chosen"]["val_acc"] >= 0.9
    with pytest.raises(GkdError, match="prompt, label"):
        tune_teacher(colour_examples(), tiny_llama, cfg, llm, tmp_path, "bad", num_classes=2)


def test_lora_head_adapter_merges_into_a_classifier(tiny_llama, tmp_path):
    """A SEQ_CLS LoRA adapter (with its trained `score` head) loads back as a plain classifier, same logits."""
    from gkd.llm.score import classify_prompts
    from gkd.llm.tune import _load_model

    cfg = {"model_path": str(tiny_llama), "scoring": "head", "num_classes": 3, "finetune": "lora", "lora_r": 4,
           "lora_alpha": 8, "lora_dropout": 0.0, "lora_targets": ["q_proj", "v_proj"], "lora_layers": 1}
    torch.manual_seed(0)
    peft_model, tok = _load_model(cfg)
    lora = [n for n, p in peft_model.named_parameters() if p.requires_grad and "lora_" in n]
    assert lora and all(".layers.1." in n for n in lora)  # lora_layers=1: the top layer only
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))  # as if trained: adapters and head both moved
    peft_model.eval().save_pretrained(tmp_path / "adapter")
    tuned = load_tuned(tmp_path / "adapter", tiny_llama)
    assert type(tuned).__name__ == "LlamaForSequenceClassification" and tuned.config.num_labels == 3
    prompts = [e["prompt"] for e in colour_examples()[:3]]
    tuned.config.pad_token_id = tok.pad_token_id
    want, _ = classify_prompts(peft_model, tok, prompts)
    got, _ = classify_prompts(tuned, tok, prompts)
    assert torch.allclose(got, want, atol=1e-4)
