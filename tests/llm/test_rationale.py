"""Rationale stream and teacher read-outs on a tiny random Llama over a small synthetic store."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from gkd.llm import rationale
from gkd.llm.features import OutputWriter, TeacherReadout, evaluate
from gkd.llm.models import load_teacher
from gkd.llm.prompts import NodePromptBuilder
from gkd.llm.score import encode_continuations, score_prompts, soft_labels

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # the world fixture ingests with Ray Data


def test_generator_rows_soft_labels_and_counted_fallbacks(world):
    cfg, tag = world
    gen = rationale.build_generator(cfg.graph_dir, cfg.llm, cfg.prompt, cfg.rationale)
    rows = gen.run([0, 5, 7])
    soft = np.array(rows["soft"])
    assert soft.shape == (3, 3) and np.allclose(soft.sum(1), 1, atol=1e-5)
    assert rows["pred"] == soft.argmax(1).tolist()
    # the soft label is the class-name log-probability of the scoring prefix, renormalised
    b = gen.builder
    logp, _ = score_prompts(gen.model, gen.tokenizer, [b.scoring_prefix(5)],
                            encode_continuations(gen.tokenizer, b.class_continuations()))
    assert np.allclose(soft[1], soft_labels(logp)[0], atol=1e-5)
    # a random model does not write the JSON asked for: counted, not a crash
    assert all(isinstance(p, list) for p in rows["problems"])
    assert sum(rows["ok"]) + sum(1 for p in rows["problems"] if p) >= 3
    assert all(set(k) <= set(map(int, tag.indices)) for k in rows["key_neighbors"])
    assert all(t > 0 for t in rows["tokens"])


def test_ray_stream_resumes_without_loss_or_duplicates(world):
    from gkd.llm.budget import teaching_budget
    from gkd.llm.teacher import measured_nodes

    cfg, tag = world
    measured = np.concatenate(measured_nodes(cfg, tag.labels, tag.split))  # the teacher's eval + val nodes
    budget = teaching_budget(cfg, tag.labels, tag.split, exclude=measured)  # what the stage streams
    # every train node, plus up to 6 others that are neither held out nor measured by the teacher (in this
    # 120-node world the teacher's eval and val budgets take every test and val node)
    free = (tag.split != "train") & (tag.split != "holdout") & ~np.isin(np.arange(tag.num_nodes), measured)
    n = 12 + min(6, int(free.sum()))
    assert len(budget) == n and set(tag.index("train")) <= set(budget) and not set(measured) & set(budget)
    first = rationale.run(cfg)
    assert first["nodes"] == n and first["new_nodes"] == n
    out = cfg.workdir / "rationale"
    parts = sorted(out.glob("part-*.parquet"))
    # simulate a kill: one batch never written, one part cut mid-write
    lost = pq.read_table(parts[0])["node_id"].to_pylist()
    parts[0].unlink()
    parts[1].write_bytes(parts[1].read_bytes()[:40])
    second = rationale.run(cfg)
    assert second["nodes"] == n and 0 < second["new_nodes"] <= 8
    table = rationale.read_rationales(cfg.stage_dir("rationale"))
    assert table["node_id"].to_pylist() == budget.tolist()  # each budget node exactly once
    assert set(lost) <= set(table["node_id"].to_pylist())
    third = rationale.run(cfg)
    assert third["new_nodes"] == 0


def test_teacher_readout_shapes_and_writer(world, tmp_path):
    cfg, tag = world
    model, tok = load_teacher(cfg.llm)
    builder = NodePromptBuilder(tag, tag.texts(), tag.class_names, tok, cfg.prompt)
    out = TeacherReadout(model, tok, builder, hops=2).run([3, 4, 9])
    assert out["soft"].shape == (3, 3) and len([k for k in out if k.startswith("feat_hop")]) == 3
    for k in range(3):
        f = out[f"feat_hop{k}"]
        assert f.shape == (3, model.config.hidden_size) and f.dtype == np.float16 and np.isfinite(f).all()
    assert not np.allclose(out["feat_hop0"], out["feat_hop2"])  # more hops, another prompt, another state
    small = TeacherReadout(model, tok, builder, hops=1, feature_dim=16).run([3])
    assert small["feat_hop1"].shape == (1, 16)
    w = OutputWriter(tmp_path / "teacher", tag.num_nodes, 3, hops=2, dim=model.config.hidden_size)
    w.add(out)
    assert np.flatnonzero(np.load(tmp_path / "teacher" / "covered.npy")).tolist() == [3, 4, 9]
    assert np.load(tmp_path / "teacher" / "soft.npy")[5].sum() == 0  # uncovered rows stay empty
    m = evaluate(out["pred"], tag.labels[[3, 4, 9]])
    assert m["nodes"] == 3 and 0 <= m["acc"] <= 1


def test_one_pass_hop_features_equal_separate_prefix_prompts_and_scores_equal_three_pass(world):
    """F_k from the one K-hop prompt is the hidden state a separate prompt ending at hop k's section would
    give (causal attention); the class scores after the whole prompt are the three-pass readout's."""
    from gkd.llm.score import last_token_hidden, mark_tokens

    cfg, tag = world
    model, tok = load_teacher(cfg.llm)
    builder = NodePromptBuilder(tag, tag.texts(), tag.class_names, tok, cfg.prompt)
    nodes = [3, 4, 9]
    one = TeacherReadout(model, tok, builder, hops=2, readout="one_pass").run(nodes)
    three = TeacherReadout(model, tok, builder, hops=2, readout="three_pass").run(nodes)
    np.testing.assert_allclose(one["soft"], three["soft"], atol=1e-5)
    for j, n in enumerate(nodes):
        prompt, ends = builder.sectioned_prompt(n)
        assert prompt == builder.classification_prompt(n) and ends == sorted(ends)
        assert prompt[: ends[0]].rstrip().split("\n")[-1].startswith("Node: ")
        offsets = tok(prompt, add_special_tokens=True, return_offsets_mapping=True)["offset_mapping"]
        for k, t in enumerate(mark_tokens(tok, prompt, ends)):
            prefix = prompt[: offsets[t][1]]  # the text up to the marked token, as a prompt of its own
            alone = last_token_hidden(model, tok, [prefix])[0].numpy()
            np.testing.assert_allclose(one[f"feat_hop{k}"][j].astype(np.float32), alone, rtol=2e-2, atol=2e-2)
    assert not np.allclose(one["feat_hop0"], one["feat_hop2"])  # more hops seen, another state
    with pytest.raises(ValueError, match="readout must be"):
        TeacherReadout(model, tok, builder, hops=2, readout="two_pass")


def test_sectioned_prompt_marks_each_hop_and_reuses_the_last_when_a_hop_is_empty(world):
    from gkd.config import PromptConfig

    cfg, tag = world
    _, tok = load_teacher(cfg.llm)
    builder = NodePromptBuilder(tag, tag.texts(), tag.class_names, tok, cfg.prompt)
    prompt, ends = builder.sectioned_prompt(3)
    lines = [prompt[: e].split("\n")[-1] for e in ends]
    assert lines[0].startswith("Node: ")
    for k in range(1, len(ends)):
        assert lines[k].startswith(f"{k}-hop neighbors: ") or ends[k] == ends[k - 1]
    # a budget that fits no neighbour: every hop ends where the node's line ends
    tight = NodePromptBuilder(tag, tag.texts(), tag.class_names, tok,
                              PromptConfig.model_validate({**cfg.prompt.model_dump(), "max_tokens":
                                                           builder._count_classification(
                                                               builder._render_classification("x", [])) + 8,
                                                           "node_tokens": 8}))
    p2, e2 = tight.sectioned_prompt(3)
    assert "-hop neighbors" not in p2 and len(set(e2)) == 1


def test_head_teacher_readout_one_pass_equals_three_pass_and_prompts_drop_the_class_list(world):
    """A classifier teacher: soft labels are its head's softmax after the K-hop prompt (no class list in it),
    identical for both readouts."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from gkd.llm.score import classify_prompts

    cfg, tag = world
    _, tok = load_teacher(cfg.llm)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(cfg.llm.model, num_labels=tag.num_classes).eval()
    model.config.pad_token_id = tok.pad_token_id
    builder = NodePromptBuilder(tag, tag.texts(), tag.class_names, tok, cfg.prompt, class_list=False)
    named = NodePromptBuilder(tag, tag.texts(), tag.class_names, tok, cfg.prompt)
    assert tag.class_names[0] not in builder.classification_prompt(3).split("### Input:")[0]
    assert tag.class_names[0] in named.classification_prompt(3).split("### Input:")[0]
    nodes = [3, 4, 9]
    one = TeacherReadout(model, tok, builder, hops=2, readout="one_pass")
    assert one.head and one.cont_ids is None
    a = one.run(nodes)
    b = TeacherReadout(model, tok, builder, hops=2, readout="three_pass").run(nodes)
    logits, _ = classify_prompts(model, tok, [builder.scoring_prefix(n) for n in nodes])
    np.testing.assert_allclose(a["soft"], torch.softmax(logits, -1).numpy(), atol=1e-5)
    np.testing.assert_allclose(a["soft"], b["soft"], atol=1e-5)
    np.testing.assert_allclose(one.score(nodes)["soft"], a["soft"], atol=1e-5)
    # F_0: the node's own line, read inside the K-hop prompt = the 0-hop prompt's state there
    assert a["feat_hop0"].shape == b["feat_hop0"].shape == (3, model.config.hidden_size)
