import json
import time

import pytest
import torch
from safetensors.torch import load_file

from gkd.config import LLMConfig
from gkd.errors import ConfigError
from gkd.llm import models
from gkd.llm.models import EMBEDDED_TEACHER, MARKER, fetch_embedded_teacher, load_teacher, make_tiny_llama, resolve_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory):
    """The real embedded teacher, downloaded and converted once per session: (dir, seconds it took)."""
    pytest.importorskip("gguf", reason="unpacking the embedded teacher needs the gguf package")
    t0 = time.perf_counter()
    path = fetch_embedded_teacher(tmp_path_factory.mktemp("models"))
    return path, time.perf_counter() - t0


def test_tiny_llama_reloads_and_gives_logits(tiny):
    model, tok = load_teacher(LLMConfig(model=str(tiny)))
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    assert not model.training and tok.padding_side == "left" and tok.pad_token == "<|pad|>"
    assert sum(f.stat().st_size for f in tiny.iterdir()) < 5e6

    batch = tok(["a text editor", "the python interpreter for scripts"], return_tensors="pt", padding=True)
    assert batch.input_ids[0, 0] == tok.pad_token_id  # left padded
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, batch.input_ids.shape[1], len(tok))
    assert torch.isfinite(logits).all()

    prompt = tok.apply_chat_template([{"role": "user", "content": "Which category?"}], add_generation_prompt=True,
                                     tokenize=False)
    assert prompt == "<|im_start|>user\nWhich category?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(prompt).input_ids
    assert ids[0] == tok.bos_token_id and tok.eos_token_id in ids  # specials are single tokens
    assert tok.unk_token_id not in tok("zyxt-9 naïve").input_ids  # character fallback, no unknowns


def test_tiny_llama_is_seeded_and_learns_words(tiny, tmp_path):
    a = load_file(tiny / "model.safetensors")
    b = load_file(make_tiny_llama(tmp_path / "same") / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    again = make_tiny_llama(tmp_path / "again", texts=["graphstorm distiller", "graphstorm"], vocab_size=10_000)
    emb = "model.embed_tokens.weight"
    assert load_file(again / "model.safetensors")[emb].shape[0] == a[emb].shape[0] + 2  # the two new words
    _, tok = load_teacher(LLMConfig(model=str(again)), for_training=True)
    assert tok.convert_ids_to_tokens(tok("GraphStorm").input_ids) == ["graphstorm"]
    assert tok.padding_side == "right"


def test_resolve_model_dirs_ids_and_bad_paths(tiny, tmp_path):
    assert resolve_model(str(tiny)) == tiny
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    for bad in ["./no/such/model", str(tmp_path / "missing"), "~/no-such-model-dir"]:
        with pytest.raises(ConfigError, match="looks like a local path"):
            resolve_model(bad)
    with pytest.raises(ConfigError, match="llm.model="):
        load_teacher(LLMConfig(model=str(tmp_path)))  # a directory, but no model in it


def test_fetch_is_atomic_and_cleans_up(tmp_path, monkeypatch):
    stale = tmp_path / f".{EMBEDDED_TEACHER}.tmp-old"
    stale.mkdir()  # left by a killed fetch

    def killed(out):
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "_build_embedded_teacher", killed)
    with pytest.raises(KeyboardInterrupt):
        fetch_embedded_teacher(tmp_path)
    assert not (tmp_path / EMBEDDED_TEACHER).exists() and not stale.exists()
    assert not list(tmp_path.glob(".*.tmp-*"))

    monkeypatch.setattr(models, "_build_embedded_teacher", lambda out: (out / MARKER).write_text("{}"))
    monkeypatch.setenv("GKD_CACHE_DIR", str(tmp_path / "root"))
    assert fetch_embedded_teacher() == tmp_path / "root" / "models" / EMBEDDED_TEACHER
    assert resolve_model(EMBEDDED_TEACHER) == tmp_path / "root" / "models" / EMBEDDED_TEACHER


@pytest.mark.slow
def test_embedded_smollm2_answers(smollm2, monkeypatch):
    path, seconds = smollm2
    marker = json.loads((path / MARKER).read_text())
    assert marker["wheel_version"] == "0.1.2" and len(marker["gguf_sha256"]) == 64
    print(f"fetch+convert {seconds:.1f} s, {sum(f.stat().st_size for f in path.iterdir()) / 1e6:.0f} MB")

    def refetch(out):
        raise AssertionError("a second fetch rebuilt the model")

    with monkeypatch.context() as m:  # the marker short-cuts a second fetch: no download, no conversion
        m.setattr(models, "_build_embedded_teacher", refetch)
        assert fetch_embedded_teacher(path.parent) == path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok = load_teacher(LLMConfig(model=EMBEDDED_TEACHER, cache_dir=path.parent))
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert tok.pad_token is not None and tok.padding_side == "left"
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    batch = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, batch.input_ids.shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer  # observed: "The capital of France is Paris."
