"""Instruction tuning of the teacher LLM (LinguGKD step 1): Ray Train TorchTrainer + DeepSpeed ZeRO.

Two read-outs (`TeacherConfig.scoring`): `names` tunes the causal LM with the loss on the response (the
class name) only; `head` tunes a sequence classifier (transformers' *ForSequenceClassification: a linear
head on the last token's hidden state) with cross-entropy over the classes, and its prompts need no class
list. LoRA (peft; optionally on the top `lora_layers` layers only, so the backward pass stops there) or
full fine-tuning by `TeacherConfig.finetune`; warm-up then cosine/linear decay of the learning rate.
After each epoch every rank scores its share of the validation prompts: accuracy, ECE and a reliability
PNG go to MLflow, and the epoch's checkpoint carries them, so the best epoch on val can be kept.
Every checkpoint holds `deepspeed/` (each rank's ZeRO shards, for resume), `model/` (a plain
Hugging Face dir: the LoRA adapter, or the full weights gathered from every rank) and
`trainer_state.json`. A rerun with the same storage_path/name resumes from the latest one.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gkd.config import LLMConfig, TeacherConfig
from gkd.errors import ConfigError, GkdError
from gkd.live import RankZeroLogger, live_target
from gkd.plots import reliability_png
from gkd.runtime import local_run_dir, previous_result

log = logging.getLogger(__name__)

IGNORE = -100  # label of tokens that carry no loss (prompt, padding)
STATE_FILE = "trainer_state.json"
DS_DIR = "deepspeed"
MODEL_DIR = "model"


# ----------------------------------------------------------------------------- Ray-free core


def tokenize_examples(tokenizer, examples: list[dict], max_len: int) -> list[dict]:
    """[{prompt, response}] -> [{input_ids, labels}], labels -100 on the prompt; response + eos kept whole.
    [{prompt, label}] (the `head` read-out) -> [{input_ids, label}].

    A prompt too long for max_len loses tokens from its left side (a leading BOS is kept).
    """
    if examples and "label" in examples[0]:
        return [{"input_ids": _left_cut(tokenizer, tokenizer(ex["prompt"])["input_ids"], max_len),
                 "label": int(ex["label"])} for ex in examples]
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("the teacher's tokenizer has no eos token; set tokenizer.eos_token before tuning")
    out = []
    for i, ex in enumerate(examples):
        prompt = tokenizer(ex["prompt"])["input_ids"]
        response = tokenizer(ex["response"], add_special_tokens=False)["input_ids"] + [eos]
        bos = 1 if tokenizer.bos_token_id is not None and prompt[:1] == [tokenizer.bos_token_id] else 0
        if max_len - len(response) - bos < 1:
            raise ConfigError(
                f"example {i}: the response takes {len(response)} tokens, which leaves no room for the "
                f"prompt within max_len={max_len}; raise max_len or shorten the response"
            )
        prompt = _left_cut(tokenizer, prompt, max_len - len(response))
        out.append({"input_ids": prompt + response, "labels": [IGNORE] * len(prompt) + response})
    return out


def _left_cut(tokenizer, ids: list[int], max_len: int) -> list[int]:
    """Keep the last max_len tokens (a leading BOS stays)."""
    if len(ids) <= max_len:
        return ids
    head = ids[:1] if tokenizer.bos_token_id is not None and ids[:1] == [tokenizer.bos_token_id] else []
    return head + ids[len(ids) - (max_len - len(head)):]


def pad_batch(rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad token rows to the longest: input_ids, attention_mask, labels (B, T); labels -100 on pads.
    Classification rows ({input_ids, label}) give labels (B,)."""
    width = max(len(r["input_ids"]) for r in rows)
    if "label" in rows[0]:
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
            mask[i, : len(r["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": mask,
                "labels": torch.tensor([r["label"] for r in rows], dtype=torch.long)}
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n] = torch.tensor(r["input_ids"])
        labels[i, :n] = torch.tensor(r["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def shard_indices(num_examples: int, rank: int, world: int) -> list[int]:
    """This rank's example indices; the list wraps around so every rank gets ceil(N / world)."""
    per_rank = math.ceil(num_examples / world)
    return [(rank + world * j) % num_examples for j in range(per_rank)]


class MicroBatches:
    """The deterministic stream of micro-batches of one rank: micro-batch m -> shard positions.

    Epoch e shuffles the shard with rng(seed, e, rank), so the same seed gives the same order and
    a resumed run skips finished micro-batches by index, without replaying them.
    """

    def __init__(self, shard_len: int, batch_size: int, seed: int, rank: int):
        self.shard_len, self.batch_size, self.seed, self.rank = shard_len, batch_size, seed, rank
        self.per_epoch = math.ceil(shard_len / batch_size)
        self._order: tuple[int, np.ndarray] | None = None

    def __getitem__(self, m: int) -> np.ndarray:
        epoch, b = divmod(m, self.per_epoch)
        if self._order is None or self._order[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch, self.rank])
            self._order = (epoch, rng.permutation(self.shard_len))
        return self._order[1][b * self.batch_size : (b + 1) * self.batch_size]


def total_steps(num_examples: int, world: int, batch_size: int, grad_accum: int, epochs: int,
                max_steps: int | None) -> int:
    """Optimizer steps of the run: max_steps if set, else enough to cover `epochs` passes."""
    if max_steps is not None:
        return max_steps
    per_epoch = math.ceil(math.ceil(num_examples / world) / batch_size)
    return max(1, math.ceil(epochs * per_epoch / grad_accum))


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """The learning rate's multiplier at optimizer step `step` (0-based) of `total`: linear warm-up over
    `warmup` steps, then constant, cosine or linear decay towards 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return 1.0 - progress
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")


def epoch_ends(done: int, grad_accum: int, per_epoch: int) -> bool:
    """Whether optimizer step `done` (1-based) finishes an epoch of `per_epoch` micro-batches."""
    return (done * grad_accum) // per_epoch > ((done - 1) * grad_accum) // per_epoch


def deepspeed_config(config: dict) -> dict:
    """DeepSpeed config from the worker config: ZeRO stage, micro-batch, accumulation, bf16 or fp32."""
    zero = {"stage": config["zero_stage"]}
    if config["zero_stage"] == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": config["batch_size"],
        "gradient_accumulation_steps": config["grad_accum"],
        "gradient_clipping": 1.0,
        "bf16": {"enabled": config["dtype"] == "bfloat16"},
        "fp16": {"enabled": False},  # never fp16: CPUs have no fp16 training path
        "zero_optimization": zero,
        "steps_per_print": 10**9,
    }


def skip_shm_comm_op() -> None:
    """Keep DeepSpeed from JIT-compiling its CPU shared-memory op (`deepspeed_shm_comm`).

    DeepSpeed's torch backend loads that op whenever it wraps torch.distributed on the CPU accelerator:
    a ninja build into ~/.cache/torch_extensions, about 90 s on 2 cores, in the first worker of every new
    machine, redone whenever another caller builds it with other flags. Only `inference_all_reduce`
    (tensor-parallel inference) uses the op; ZeRO training reduces with torch.distributed (gloo on CPU),
    so marking the op incompatible changes no result. DeepSpeed reads this cached dict before loading it.
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


# ----------------------------------------------------------------------------- per-worker loop


def complete_state(folder: Path) -> dict:
    """A persisted checkpoint folder's trainer state, if every rank's DeepSpeed shards of that step are in it
    (Ray merges the ranks' folders one upload at a time: a kill can leave some out); else ValueError."""
    state = json.loads((Path(folder) / STATE_FILE).read_text())
    step_dir = Path(folder) / DS_DIR / f"step{state['step']}"
    missing = [r for r in range(state["world_size"]) if not any(step_dir.glob(f"*zero_pp_rank_{r}_*"))]
    if state.get("zero_stage", 0) > 0 and missing:
        raise ValueError(f"ranks {missing} have no ZeRO shards in {step_dir}")
    return state


def _read_state(checkpoint) -> dict | None:
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        return json.loads((Path(d) / STATE_FILE).read_text())


def _load_model(config: dict):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(config["model_path"])
    head = config["scoring"] == "head"
    if head:
        model = AutoModelForSequenceClassification.from_pretrained(
            config["model_path"], dtype=torch.float32, num_labels=config["num_classes"])
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        model.config.pad_token_id = pad  # the classifier pools the last non-pad token
    else:
        model = AutoModelForCausalLM.from_pretrained(config["model_path"], dtype=torch.float32)
    if config["finetune"] == "lora":
        from peft import LoraConfig, get_peft_model

        layers = model.config.num_hidden_layers
        top = config.get("lora_layers")
        model = get_peft_model(model, LoraConfig(
            task_type="SEQ_CLS" if head else "CAUSAL_LM", r=config["lora_r"], lora_alpha=config["lora_alpha"],
            lora_dropout=config["lora_dropout"], target_modules=list(config["lora_targets"]),
            # adapters on the top layers only: no gradient flows below them, so the backward pass is shorter
            layers_to_transform=list(range(layers - top, layers)) if top and top < layers else None,
        ))  # SEQ_CLS also trains (and saves) the new classification head, `score`
    return model, tokenizer


def param_groups(model, lr: float, head_lr: float | None) -> list[dict]:
    """Trainable parameters; the classification head (`score`) at head_lr when given."""
    head, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (head if head_lr is not None and ".score." in f".{name}." else rest).append(p)
    return [g for g in ({"params": rest, "lr": lr}, {"params": head, "lr": head_lr or lr}) if g["params"]]


def class_probs(model, tokenizer, prompts: list[str], cont_ids: list[list[int]] | None, device,
                batch_size: int = 8) -> np.ndarray:
    """(n, C) class probabilities of the prompts in eval mode, batch by batch, exactly as the teacher stage reads
    them (gkd.llm.score.class_distribution: the head's softmax, or the class names' scores renormalised)."""
    from gkd.llm.score import class_distribution

    was = model.training
    model.eval()
    out = [class_distribution(model, tokenizer, prompts[i : i + batch_size], cont_ids, device)
           for i in range(0, len(prompts), batch_size)]
    model.train(was)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _validate(engine, tokenizer, config: dict, val: list[dict], rank: int, world: int) -> dict | None:
    """Every rank scores val[rank::world]; rank 0 gathers them -> {val_acc, val_ece, val_nll, bins} (else None)."""
    import torch.distributed as dist

    from gkd.llm.calibration import reliability

    mine = list(range(rank, len(val), world))
    probs = class_probs(engine.module, tokenizer, [val[i]["prompt"] for i in mine], config.get("cont_ids"),
                        engine.device)
    parts = [None] * world
    dist.all_gather_object(parts, (mine, probs))
    if rank != 0:
        return None
    idx = np.concatenate([np.asarray(m, np.int64) for m, _ in parts])
    p = np.concatenate([q for _, q in parts if len(q)])
    labels = np.asarray([val[i]["label"] for i in idx])
    rel = reliability(p, labels)
    nll = float(-np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, None)).mean())
    return {"val_acc": rel["acc"], "val_ece": rel["ece"], "val_nll": round(nll, 4), "val_nodes": len(labels),
            "bins": rel["bins"]}


def _save_hf(engine, tokenizer, out_dir: Path, rank: int, zero_stage: int) -> None:
    """Rank 0 writes a plain HF dir: the peft adapter or the full model (ZeRO-3: gathered from all ranks)."""
    # every rank takes part in the gather under ZeRO-3; the others get None back
    state = engine._zero3_consolidated_16bit_state_dict() if zero_stage == 3 else None
    if rank == 0:
        engine.module.save_pretrained(out_dir, state_dict=state)
        tokenizer.save_pretrained(out_dir)


def _save_and_report(engine, tokenizer, config: dict, state: dict, metrics: dict, rank: int) -> None:
    """Every rank writes its DeepSpeed shards, then reports; Ray merges the ranks' dirs into one checkpoint."""
    import ray.train

    lora = config["finetune"] == "lora"
    with tempfile.TemporaryDirectory(prefix="gkd-tune-") as tmp:
        tmp = Path(tmp)
        tag = f"step{state['step']}"
        (tmp / DS_DIR / tag).mkdir(parents=True)
        # LoRA: the frozen base weights come from model_path again, so the shards skip them
        engine.save_checkpoint(str(tmp / DS_DIR), tag=tag, exclude_frozen_parameters=lora)
        _save_hf(engine, tokenizer, tmp / MODEL_DIR, rank, config["zero_stage"])
        if rank == 0:
            (tmp / STATE_FILE).write_text(json.dumps(state))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(tmp)))


def train_loop(config: dict) -> None:
    """Ray Train worker: DeepSpeed ZeRO instruction tuning over this rank's shard, resumable by step."""
    import deepspeed
    import ray
    import ray.train
    import torch.distributed as dist

    if config.get("torch_threads"):
        torch.set_num_threads(config["torch_threads"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    examples = config["examples"]
    if isinstance(examples, ray.ObjectRef):
        examples = ray.get(examples)
    steps = total_steps(len(examples), world, config["batch_size"], config["grad_accum"], config["epochs"],
                        config["max_steps"])
    from gkd.runtime import resume_state

    checkpoint, prior, source = resume_state(ray.train.get_checkpoint(), config.get("run_dir"), complete_state,
                                             lambda state: state["step"])
    start = prior["step"] if prior else 0
    if start:
        log.info("rank %d resumes after step %d (%s)", rank, start, source)
    if start >= steps:
        log.info("checkpoint is at step %d of %d: nothing left to train", start, steps)
        return

    torch.manual_seed(config["seed"])
    model, tokenizer = _load_model(config)
    if config["use_gpu"]:
        import ray.train.torch

        torch.cuda.set_device(ray.train.torch.get_device())
    optimizer = torch.optim.AdamW(param_groups(model, config["lr"], config.get("head_lr")),
                                  weight_decay=config["weight_decay"])
    warmup = int(round(config.get("warmup_ratio", 0.0) * steps))
    schedule = config.get("lr_schedule", "constant")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps, warmup, schedule))
    skip_shm_comm_op()
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                      config=deepspeed_config(config))
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            engine.load_checkpoint(str(Path(d) / DS_DIR), tag=f"step{start}",
                                   load_module_strict=config["finetune"] != "lora")

    val = config.get("val_examples") or []
    if isinstance(val, ray.ObjectRef):
        val = ray.get(val)
    if val and config["scoring"] == "names":
        from gkd.llm.score import encode_continuations

        config = {**config, "cont_ids": encode_continuations(tokenizer, list(config["continuations"]))}
    shard = [examples[i] for i in shard_indices(len(examples), rank, world)]
    rows = tokenize_examples(tokenizer, shard, config["max_len"])
    stream = MicroBatches(len(rows), config["batch_size"], config["seed"], rank)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    grad_accum, every = config["grad_accum"], config["checkpoint_every"]
    first_loss = prior["first_loss"] if prior else None
    since_report: list[float] = []
    live = RankZeroLogger(config.get("mlflow"), rank)
    t0 = time.perf_counter()
    engine.train()
    for step in range(start, steps):
        # dropout draws depend on (seed, rank, step) only, so a resumed run repeats them exactly
        torch.manual_seed(int(np.random.SeedSequence([config["seed"], rank, step]).generate_state(1)[0]))
        step_loss = torch.zeros((), device=engine.device)
        for m in range(step * grad_accum, (step + 1) * grad_accum):
            batch = pad_batch([rows[i] for i in stream[m]], pad_id)
            out = engine(**{k: v.to(engine.device) for k, v in batch.items()})
            engine.backward(out.loss)
            engine.step()
            step_loss += out.loss.detach().float() / grad_accum
        dist.all_reduce(step_loss)
        loss = step_loss.item() / world
        first_loss = loss if first_loss is None else first_loss
        since_report.append(loss)
        done = step + 1
        if rank == 0:
            log.info("step %d/%d loss %.4f", done, steps, loss)
        live.log({"loss": loss, "lr": engine.get_lr()[0]}, done)
        ends_epoch = epoch_ends(done, grad_accum, stream.per_epoch) or done == steps
        if done % every == 0 or ends_epoch:
            epoch = done * grad_accum / stream.per_epoch
            state = {"step": done, "epoch": epoch, "first_loss": first_loss, "world_size": world,
                     "finetune": config["finetune"], "zero_stage": config["zero_stage"]}
            metrics = {"step": done, "epoch": epoch, "loss": float(np.mean(since_report)), "last_loss": loss,
                       "first_loss": first_loss, "start_step": start,
                       "train_s": time.perf_counter() - t0}
            if ends_epoch and val:
                t_val = time.perf_counter()
                got = _validate(engine, tokenizer, config, val, rank, world)
                if got is not None:  # rank 0
                    bins = got.pop("bins")
                    metrics.update(got, val_s=round(time.perf_counter() - t_val, 1))
                    live.log(got, done)
                    live.artifact_png(lambda path: reliability_png(
                        bins, path, f"teacher after epoch {epoch:.2f}: val acc {got['val_acc']:.3f}, "
                        f"ECE {got['val_ece']:.3f}"), f"reliability_epoch{round(epoch, 2):g}.png",
                        "teacher_calibration")
            _save_and_report(engine, tokenizer, config, state, metrics, rank)
            since_report = []


# ----------------------------------------------------------------------------- driver


def _summary(result, keep: str = "last") -> dict:
    """The run's checkpoint to use: the latest, or (keep="best_val") the epoch-end one with the best val
    accuracy (ties: the later one); history lists every checkpoint's metrics in step order."""
    kept = sorted(result.best_checkpoints or [], key=lambda cm: cm[1].get("step", 0))
    ckpt, chosen = Path(result.checkpoint.path), dict(result.metrics or {})
    scored = [(c, m) for c, m in kept if m.get("val_acc") is not None]
    if keep == "best_val" and scored:
        best = max(range(len(scored)), key=lambda i: (scored[i][1]["val_acc"], i))
        ckpt, chosen = Path(scored[best][0].path), dict(scored[best][1])
    return {
        "checkpoint_path": str(ckpt),
        "metrics": dict(result.metrics or {}),
        "chosen": chosen,
        "adapter_dir": str(ckpt / MODEL_DIR),
        "history": [dict(m) for _, m in kept],
    }


def tune_teacher(examples: list[dict], model_path: str | Path, cfg: TeacherConfig, llm_cfg: LLMConfig,
                 storage_path: Path, name: str, max_len: int = 512, val_examples: list[dict] | None = None,
                 continuations: list[str] | None = None, num_classes: int | None = None) -> dict:
    """Tune on [{prompt, response}] (cfg.scoring names) or [{prompt, label}] (head) -> {checkpoint_path,
    metrics, chosen, adapter_dir, history}. val_examples ([{prompt, label}]) are scored after every epoch
    (names: against `continuations`, the class names as the teacher emits them); the head has num_classes.

    A rerun with the same storage_path/name resumes from that run's latest checkpoint
    (Ray Train V2 restores it from <storage_path>/<name>/checkpoint_manager_snapshot.json);
    a run already at its last step returns that checkpoint without starting workers.
    adapter_dir is the checkpoint's `model/` dir: a LoRA adapter or full weights, see `load_tuned`.
    """
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if not examples:
        raise GkdError("tune_teacher got no training examples; check teacher.train_budget and the train split")
    head = cfg.scoring == "head"
    if head and not num_classes:
        raise ConfigError("teacher.scoring=head needs num_classes for its classification head")
    if head != ("label" in examples[0]):
        raise GkdError(f"teacher.scoring={cfg.scoring} needs examples of {{prompt, {'label' if head else 'response'}}}")
    if val_examples and not head and not continuations:
        raise GkdError("validating a names-scoring teacher needs the class continuations")
    run_dir = Path(storage_path) / name
    previous = previous_result(run_dir)
    if previous is not None:
        prior = _read_state(previous.checkpoint)
        if prior["world_size"] != cfg.num_workers:
            raise ConfigError(
                f"teacher.num_workers={cfg.num_workers}, but run {run_dir} was checkpointed by "
                f"{prior['world_size']} workers (its ZeRO shards are per rank); resume with "
                f"teacher.num_workers={prior['world_size']} or start a new run name"
            )
        if (prior["finetune"], prior["zero_stage"]) != (cfg.finetune, cfg.zero_stage):
            raise ConfigError(
                f"run {run_dir} was checkpointed with finetune={prior['finetune']}, "
                f"zero_stage={prior['zero_stage']}; teacher.finetune/zero_stage must match to resume, "
                f"or start a new run name"
            )
        steps = total_steps(len(examples), cfg.num_workers, cfg.batch_size, cfg.grad_accum, cfg.epochs,
                            cfg.max_steps)
        if prior["step"] >= steps:
            log.info("run %s is already at step %d of %d; reusing its checkpoint", run_dir, prior["step"], steps)
            return _summary(previous, cfg.keep)
    config = {
        **cfg.model_dump(),
        "examples": ray.put(list(examples)),
        "val_examples": ray.put(list(val_examples)) if val_examples else None,
        "continuations": list(continuations or []),
        "num_classes": num_classes,
        "model_path": str(model_path),
        "max_len": max_len,
        "dtype": llm_cfg.dtype,
        "torch_threads": llm_cfg.torch_threads,
        "mlflow": live_target("step."),  # rank 0 logs the per-step loss into the active stage run
        "run_dir": local_run_dir(storage_path, name),
    }
    # DeepSpeed picks its accelerator from the environment; a CPU-only worker must be told
    worker_env = {} if cfg.use_gpu else {"env_vars": {"DS_ACCELERATOR": "cpu"}}
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={"CPU": cfg.num_cpus_per_worker}),
        run_config=RunConfig(storage_path=str(storage_path), name=name,
                             failure_config=FailureConfig(max_failures=cfg.max_failures),
                             worker_runtime_env=worker_env),
    )
    t0 = time.perf_counter()
    result = trainer.fit()
    if result.checkpoint is None:
        raise GkdError(f"teacher tuning run {name} finished without a checkpoint under {storage_path}")
    log.info("teacher tuned in %.0f s: %s (%s)", time.perf_counter() - t0, result.checkpoint.path, result.metrics)
    return _summary(result, cfg.keep)


def load_tuned(adapter_or_model_dir: str | Path, base_model_path: str | Path | None = None,
               dtype: torch.dtype = torch.float32):
    """A plain HF model for inference: a LoRA adapter merged into its base, or a full tuned model. A `head`
    teacher comes back as a sequence classifier (its adapter was saved with task SEQ_CLS), else a causal LM."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    path = Path(adapter_or_model_dir)
    if not (path / "adapter_config.json").is_file():
        archs = getattr(AutoConfig.from_pretrained(path), "architectures", None) or []
        auto = (AutoModelForSequenceClassification if any(a.endswith("ForSequenceClassification") for a in archs)
                else AutoModelForCausalLM)
        return auto.from_pretrained(path, dtype=dtype).eval()
    from peft import PeftModel

    adapter = json.loads((path / "adapter_config.json").read_text())
    if base_model_path is None:
        base_model_path = adapter["base_model_name_or_path"]
    if adapter.get("task_type") == "SEQ_CLS":
        base = AutoModelForSequenceClassification.from_pretrained(base_model_path, dtype=dtype,
                                                                  num_labels=_head_classes(path))
    else:
        base = AutoModelForCausalLM.from_pretrained(base_model_path, dtype=dtype)
    return PeftModel.from_pretrained(base, path).merge_and_unload().eval()


def _head_classes(adapter_dir: Path) -> int:
    """The number of classes of a SEQ_CLS adapter: the rows of its saved `score` head."""
    from safetensors import safe_open

    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as f:
        for key in f.keys():
            if ".score." in f".{key}." and key.endswith("weight"):
                return int(f.get_slice(key).get_shape()[0])
    raise GkdError(f"{adapter_dir}: a SEQ_CLS adapter without a saved `score` head")
