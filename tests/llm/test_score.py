import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from gkd.llm.score import encode_continuations, last_token_hidden, score_prompts, soft_labels

WORDS = "the node is a package for editing text kernel games fonts python class answer : ### response".split()


@pytest.fixture(scope="module")
def tiny():
    vocab = {"<unk>": 0, "<pad>": 1, "<s>": 2, "</s>": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                        bos_token="<s>", eos_token="</s>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=128, pad_token_id=1, eos_token_id=3))
    return model.eval(), tokenizer


def naive_logprob(model, tokenizer, prompt, cont):
    """log P(cont | prompt) by running prompt+cont as one sequence (no cache, no padding)."""
    p = tokenizer(prompt)["input_ids"]
    c = tokenizer(cont, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + c])
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    return sum(lp[len(p) - 1 + j, t].item() for j, t in enumerate(c))


def test_shared_prefix_scores_match_hand_computation(tiny):
    model, tokenizer = tiny
    prompts = ["the node is a package for editing text ### response :",  # longer
               "python class answer :"]  # shorter -> left padded
    conts = ["kernel </s>", "games fonts </s>", "python </s>", "text editing the package </s>"]
    logp, hidden = score_prompts(model, tokenizer, prompts, encode_continuations(tokenizer, conts))
    assert logp.shape == (2, 4) and hidden.shape == (2, 32)
    want = torch.tensor([[naive_logprob(model, tokenizer, p, c) for c in conts] for p in prompts])
    assert torch.allclose(logp, want, atol=1e-4), (logp, want)
    soft = soft_labels(logp)
    assert np.allclose(soft.sum(1), 1.0, atol=1e-6)
    assert (soft.argmax(1) == want.argmax(1).numpy()).all()


def test_last_token_hidden_ignores_padding(tiny):
    model, tokenizer = tiny
    alone = last_token_hidden(model, tokenizer, ["python class answer :"])
    batched = last_token_hidden(model, tokenizer, ["the node is a package for editing text", "python class answer :"])
    assert torch.allclose(alone[0], batched[1], atol=1e-5)
    _, h = score_prompts(model, tokenizer, ["python class answer :"], encode_continuations(tokenizer, ["kernel"]))
    assert torch.allclose(h[0], alone[0], atol=1e-5)


def test_classifier_readout_matches_each_prompt_alone(tiny):
    """The head teacher: one left-padded pass gives each prompt's own pooled logits and prefix hidden states."""
    from transformers import LlamaForSequenceClassification

    from gkd.llm.score import class_distribution, classify_prompts, is_classifier

    _, tokenizer = tiny
    torch.manual_seed(1)
    model = LlamaForSequenceClassification(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, pad_token_id=1, eos_token_id=3, num_labels=5)).eval()
    assert is_classifier(model) and not is_classifier(tiny[0])
    prompts = ["the node is a package for editing text ### response :", "python class answer :"]
    marks = [[2, 5], [1, 3]]
    logits, hidden, at = classify_prompts(model, tokenizer, prompts, marks=marks)
    assert logits.shape == (2, 5) and hidden.shape == (2, 32) and at.shape == (2, 2, 32)
    for i, p in enumerate(prompts):
        ids = torch.tensor([tokenizer(p)["input_ids"]])
        with torch.no_grad():
            out = model(input_ids=ids, output_hidden_states=True)
        assert torch.allclose(logits[i], out.logits[0], atol=1e-4)  # padding changed nothing
        assert torch.allclose(hidden[i], out.hidden_states[-1][0, -1], atol=1e-4)
        for j, t in enumerate(marks[i]):
            assert torch.allclose(at[i, j], out.hidden_states[-1][0, t], atol=1e-4)
    dist = class_distribution(model, tokenizer, prompts, None)
    assert np.allclose(dist, torch.softmax(logits, -1).numpy(), atol=1e-6) and np.allclose(dist.sum(1), 1)
