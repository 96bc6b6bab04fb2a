"""Teacher read-outs from one forward pass (Ray-free): class soft labels and last-token features.

Soft labels are not parsed from generated text: each class name is scored as a continuation of
the node's prompt, log P(name | prompt) = sum of its token log-probabilities. The prompt (the
shared prefix) runs once per node; its KV cache is repeated for the C continuations, so a node
costs one prefix pass plus one short pass over C names, not C full prompts.
"""

from __future__ import annotations

import numpy as np
import torch


def _left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s) :] = 1
    return ids, mask


def _positions(mask: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return pos if offset is None else pos + offset[:, None]


def encode_continuations(tokenizer, continuations: list[str]) -> list[list[int]]:
    """Token ids of each continuation as it follows a prompt (no BOS)."""
    return [tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]


def mark_tokens(tokenizer, prompt: str, char_ends: list[int]) -> list[int]:
    """Character offsets in `prompt` -> the index of the last token ending at or before each (in the ids that
    `tokenizer(prompt, add_special_tokens=True)` gives): the token whose hidden state has seen the text up
    to that offset and nothing after it. Needs a fast tokenizer (offset mapping)."""
    enc = tokenizer(prompt, add_special_tokens=True, return_offsets_mapping=True)
    ends = [e if e > s else -1 for s, e in enc["offset_mapping"]]  # special tokens: (0, 0)
    out = []
    for c in char_ends:
        ok = [i for i, e in enumerate(ends) if 0 <= e <= c]
        if not ok:
            raise ValueError(f"no token of the prompt ends at or before character {c}")
        out.append(ok[-1])
    return out


@torch.no_grad()
def score_prompts(model, tokenizer, prompts: list[str], cont_ids: list[list[int]], device: str | torch.device = "cpu",
                  marks: list[list[int]] | None = None):
    """(B,) prompts x (C,) continuations -> (log P(cont | prompt) (B, C) float32, last-token hidden (B, d)),
    plus, with `marks` (per prompt, M token indices of its own ids, see `mark_tokens`), the hidden states
    at those tokens (B, M, d) from the same forward pass.

    Pass 1 runs the prompts (left-padded) once. Pass 2 appends all C continuations after each prompt
    as one sequence, with a 4D mask letting each continuation see the prompt and its own earlier
    tokens only (tree attention), so the prompt's KV cache is shared, never copied C times.
    The hidden state is the last layer's (after the final norm) at the prompt's final token.
    """
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    enc = [tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
    ids, mask = _left_pad(enc, pad)
    ids, mask = ids.to(device), mask.to(device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), use_cache=True,
                output_hidden_states=True)
    hidden = out.hidden_states[-1][:, -1, :].float()
    at_marks = None
    if marks is not None:
        width = ids.shape[1]
        rows = torch.tensor([[width - len(e) + t for t in m] for e, m in zip(enc, marks)], dtype=torch.long,
                            device=device)  # left padding shifts each prompt's tokens
        at_marks = out.hidden_states[-1].gather(1, rows[:, :, None].expand(-1, -1, hidden.shape[1])).float()
    first_lp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # (B, V): predicts each first token

    b, p_len = ids.shape
    flat = torch.tensor([t for c in cont_ids for t in c], dtype=torch.long, device=device)  # (T,)
    seg = torch.tensor([j for j, c in enumerate(cont_ids) for _ in c], dtype=torch.long, device=device)
    off = torch.tensor([o for c in cont_ids for o in range(len(c))], dtype=torch.long, device=device)
    starts = torch.tensor(np.cumsum([0] + [len(c) for c in cont_ids[:-1]]), dtype=torch.long, device=device)
    t_len = len(flat)
    own = (seg[:, None] == seg[None, :]) & (torch.arange(t_len, device=device)[None, :] <= torch.arange(t_len, device=device)[:, None])
    allowed = torch.cat([mask.bool()[:, None, :].expand(b, t_len, p_len), own[None].expand(b, t_len, t_len)], dim=2)
    mask4d = torch.zeros(allowed.shape, dtype=model.dtype, device=device).masked_fill(~allowed, torch.finfo(model.dtype).min)
    out2 = model(input_ids=flat[None].expand(b, t_len), attention_mask=mask4d[:, None],
                 position_ids=mask.sum(-1, keepdim=True) + off[None], past_key_values=out.past_key_values,
                 use_cache=False)
    total = first_lp[:, flat[starts]]  # (B, C)
    if t_len > 1:
        lp = torch.log_softmax(out2.logits[:, :-1, :].float(), dim=-1)  # position t predicts token t+1
        nxt = lp.gather(2, flat[1:][None, :, None].expand(b, t_len - 1, 1)).squeeze(2)  # (B, T-1)
        same = (seg[1:] == seg[:-1]).float()
        total = total.index_add(1, seg[1:], nxt * same)
    if marks is not None:
        return total.cpu(), hidden.cpu(), at_marks.cpu()
    return total.cpu(), hidden.cpu()


def is_classifier(model) -> bool:
    """A sequence classifier (the `head` teacher: logits over the classes), not a causal LM scoring names."""
    names = list(getattr(model.config, "architectures", None) or []) + [type(model).__name__]
    return any(n.endswith("ForSequenceClassification") for n in names)


@torch.no_grad()
def classify_prompts(model, tokenizer, prompts: list[str], device: str | torch.device = "cpu",
                     marks: list[list[int]] | None = None):
    """A classifier teacher, one forward pass: (B,) prompts -> (class logits (B, C) float32, last-token hidden
    (B, d)[, hidden at `marks` (B, M, d)]), as `score_prompts` returns them, with no continuation pass."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    enc = [tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
    ids, mask = _left_pad(enc, pad)
    ids, mask = ids.to(device), mask.to(device)
    # left padding: every prompt ends at the last column, which is what the head reads
    out = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), output_hidden_states=True)
    last = out.hidden_states[-1]
    hidden = last[:, -1, :].float()
    logits = out.logits.float()
    if marks is None:
        return logits.cpu(), hidden.cpu()
    width = ids.shape[1]
    rows = torch.tensor([[width - len(e) + t for t in m] for e, m in zip(enc, marks)], dtype=torch.long, device=device)
    at_marks = last.gather(1, rows[:, :, None].expand(-1, -1, hidden.shape[1])).float()
    return logits.cpu(), hidden.cpu(), at_marks.cpu()


def class_distribution(model, tokenizer, prompts: list[str], cont_ids: list[list[int]] | None,
                       device: str | torch.device = "cpu") -> np.ndarray:
    """(B, C) the teacher's distribution over the classes: its head's softmax, or its class-name scores."""
    if is_classifier(model):
        return soft_labels(classify_prompts(model, tokenizer, prompts, device)[0])
    return soft_labels(score_prompts(model, tokenizer, prompts, cont_ids, device)[0])


def soft_labels(logp: torch.Tensor) -> np.ndarray:
    """(B, C) continuation log-probs -> (B, C) distribution over the classes (renormalised)."""
    return torch.softmax(logp, dim=-1).numpy().astype(np.float32)


@torch.no_grad()
def last_token_hidden(model, tokenizer, prompts: list[str], device: str | torch.device = "cpu") -> torch.Tensor:
    """(B,) prompts -> (B, d) last-layer hidden state at each prompt's final token."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids, mask = _left_pad([tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts], pad)
    out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=_positions(mask).to(device),
                output_hidden_states=True, use_cache=False)
    return out.hidden_states[-1][:, -1, :].float().cpu()
