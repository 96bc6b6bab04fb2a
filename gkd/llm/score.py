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


@torch.no_grad()
def score_prompts(model, tokenizer, prompts: list[str], cont_ids: list[list[int]], device: str | torch.device = "cpu"):
    """(B,) prompts x (C,) continuations -> (log P(cont | prompt) (B, C) float32, last-token hidden (B, d)).

    The hidden state is the last layer's (after the final norm) at the prompt's final token.
    """
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    enc = [tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
    ids, mask = _left_pad(enc, pad)
    ids, mask = ids.to(device), mask.to(device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), use_cache=True,
                output_hidden_states=True)
    hidden = out.hidden_states[-1][:, -1, :].float()
    first_lp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # (B, V) predicts token 0

    b, c = len(prompts), len(cont_ids)
    width = max(len(t) for t in cont_ids)
    cont = torch.full((c, width), pad, dtype=torch.long)
    cmask = torch.zeros((c, width), dtype=torch.long)
    for j, t in enumerate(cont_ids):
        cont[j, : len(t)] = torch.tensor(t, dtype=torch.long)
        cmask[j, : len(t)] = 1
    cont, cmask = cont.to(device), cmask.to(device)
    cache = out.past_key_values
    cache.batch_repeat_interleave(c)  # (B*C, ...): row i*C + j = prompt i, continuation j
    full_mask = torch.cat([mask.repeat_interleave(c, 0), cmask.repeat(b, 1)], dim=1)
    start = mask.sum(-1).repeat_interleave(c)  # continuation positions follow each prompt's last
    out2 = model(input_ids=cont.repeat(b, 1), attention_mask=full_mask,
                 position_ids=_positions(cmask.repeat(b, 1), start), past_key_values=cache, use_cache=False)
    lp = torch.log_softmax(out2.logits.float(), dim=-1)  # (B*C, W, V): position t predicts token t+1
    tokens = cont.repeat(b, 1)
    total = first_lp.repeat_interleave(c, 0).gather(1, tokens[:, :1]).squeeze(1)
    if width > 1:
        nxt = lp[:, :-1, :].gather(2, tokens[:, 1:, None]).squeeze(2)  # (B*C, W-1)
        total = total + (nxt * cmask.repeat(b, 1)[:, 1:]).sum(-1)
    return total.view(b, c).cpu(), hidden.cpu()


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
