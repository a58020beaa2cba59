"""Pretraining: NSP pairs, masking, perplexity done right, control, checkpoints and resume."""

import math
import random
import threading
import time

import pytest
import torch
from support.manifests import PRETRAIN, experiment, manifest_text

from engine.data.nsp import build_nsp_pairs, documents_from_lines, mask_tokens
from engine.events import CallbackSink, EvalFinished, LogEmitted, StepLogged
from engine.files import read_json
from engine.job.runner import run_experiment
from engine.manifest import parse_text
from engine.store.runs import RunStore
from support.micro import micro_text


def micro_manifest(tmp_path, epochs=2, n_train=160):
    return parse_text(micro_text(tmp_path / "runs", epochs, n_train), tmp_path / "m.toml")


# -- data -----------------------------------------------------------------------

LINES = [
    "",
    " = Alpha = \n",
    "",
    " Alpha is a town . It has a river . The river is long . \n",
    " = = History = = \n",
    " Alpha was founded in 1700 . People came . They stayed . \n",
    "",
    " = Beta = \n",
    " Beta is a band . It plays rock . It toured Europe . It split up . \n",
    " = Gamma = \n",
    " Gamma is a river . It flows east . It floods often . \n",
]


def test_documents_split_on_article_headings():
    docs = documents_from_lines(LINES)
    assert len(docs) == 3
    assert docs[0][0] == "Alpha is a town ." and "History" not in " ".join(docs[0])
    assert len(docs[0]) == 6


def _fake_docs(n_docs=40, seed=0):
    rng = random.Random(seed)
    docs = []
    for d in range(n_docs):
        # token ids encode (doc, sentence) so continuity can be checked
        docs.append([[d * 1000 + s * 10 + k for k in range(rng.randint(3, 9))] for s in range(rng.randint(10, 30))])
    return docs


def test_nsp_pairs_recipe():
    docs = _fake_docs()
    pairs = build_nsp_pairs(docs, max_seq_length=48, short_seq_prob=0.1, seed=1)
    assert len(pairs) > 50
    randoms = sum(1 for _, _, r in pairs if r)
    assert 0.35 < randoms / len(pairs) < 0.65
    for a, b, is_random in pairs:
        assert a and b, "no empty segments"
        assert len(a) + len(b) <= 48 - 3
        if not is_random:
            # a true continuation: same document, and B starts after A ends (truncation only trims ends)
            assert {t // 1000 for t in a} == {t // 1000 for t in b}
            assert max(t % 1000 for t in a) < min(t % 1000 for t in b)
        else:
            assert {t // 1000 for t in a}.isdisjoint({t // 1000 for t in b})


def test_masking_statistics():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(10, 1000, (400, 128))
    x[:, 0] = 2  # [CLS]
    x[:, 60] = 3  # [SEP]
    x[:, -1] = 3
    x[:200, 100:] = 0  # padding in half the rows
    special = (x == 2) | (x == 3) | (x == 0)
    ids, labels = mask_tokens(
        x, special, mask_id=4, vocab_size=1000, mlm_probability=0.15, max_predictions=20, generator=g
    )
    chosen = labels != -100
    assert not chosen[special].any(), "never [CLS]/[SEP]/[PAD]"
    n_real = (~special).sum(1)
    expected = torch.clamp(torch.round(n_real * 0.15), 1, 20)
    assert torch.equal(chosen.sum(1), expected.long())
    assert torch.equal(labels[chosen], x[chosen])
    frac_mask = (ids[chosen] == 4).float().mean().item()
    frac_same = (ids[chosen] == x[chosen]).float().mean().item()
    assert abs(frac_mask - 0.8) < 0.03
    assert 0.07 < frac_same < 0.13  # 10% kept (+ the rare random draw of the same id)
    assert torch.equal(ids[~chosen], x[~chosen])


# -- perplexity ----------------------------------------------------------------------


def test_perplexity_equals_hand_computation_and_is_not_exp_of_combined_loss():
    from transformers import BertConfig, BertForPreTraining

    from engine.tasks.pretrain import evaluate_mlm

    torch.manual_seed(0)
    model = BertForPreTraining(
        BertConfig(
            vocab_size=50,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
    ).eval()

    class Tok:
        pad_token_id, cls_token_id, sep_token_id, mask_token_id = 0, 2, 3, 4

    seqs = [[2, 10, 4, 12, 3, 20, 4, 3], [2, 4, 15, 3, 16, 17, 4, 18, 19, 3], [2, 30, 31, 4, 3, 33, 3]]
    labels = [
        [-100, -100, 11, -100, -100, -100, 21, -100],
        [-100, 14, -100, -100, -100, -100, 40, -100, -100, -100],
        [-100, -100, -100, 32, -100, -100, -100],
    ]
    types = [[0] * 5 + [1] * 3, [0] * 4 + [1] * 6, [0] * 5 + [1] * 2]
    nsp = [0, 1, 0]
    data = {"masked_ids": seqs, "labels": labels, "token_type_ids": types, "nsp": nsp}
    with torch.no_grad():
        got = evaluate_mlm(model, data, Tok, batch_size=2, device=torch.device("cpu"))
        # by hand: one sequence at a time through the stock HF forward, full-vocabulary logits
        nll, n, hf_losses = 0.0, 0, []
        for s, lab, t, y in zip(seqs, labels, types, nsp):
            out = model(
                input_ids=torch.tensor([s]),
                token_type_ids=torch.tensor([t]),
                labels=torch.tensor([lab]),
                next_sentence_label=torch.tensor([y]),
            )
            logp = out.prediction_logits[0].log_softmax(-1)
            for pos, target in enumerate(lab):
                if target != -100:
                    nll -= logp[pos, target].item()
                    n += 1
            hf_losses.append(out.loss.item())
    assert got["masked_tokens"] == n == 5
    assert got["mlm_perplexity"] == pytest.approx(math.exp(nll / n), rel=1e-5)
    # exp of the combined (MLM + NSP, per-sequence mean) loss is a different, wrong number
    assert abs(math.exp(sum(hf_losses) / len(hf_losses)) - got["mlm_perplexity"]) > 0.05 * got["mlm_perplexity"]


def test_saved_masked_positions_agree_with_the_evaluation():
    """mask_examples scores the same positions as evaluate_mlm: top-1 right as often as its accuracy says."""
    from transformers import BertConfig, BertForPreTraining

    from engine.tasks.pretrain import evaluate_mlm, mask_examples

    torch.manual_seed(1)
    model = BertForPreTraining(
        BertConfig(
            vocab_size=12,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=32,
        )
    ).eval()

    class Tok:
        pad_token_id, cls_token_id, sep_token_id, mask_token_id = 0, 2, 3, 4

        @staticmethod
        def convert_ids_to_tokens(ids):
            names = ["[PAD]", "a", "[CLS]", "[SEP]", "[MASK]", "b", "##c", "d", "e", "f", "g", "h"]
            return names[ids] if isinstance(ids, int) else [names[i] for i in ids]

    g = torch.Generator().manual_seed(3)
    seqs, labels = [], []
    for n in (9, 14, 6, 11, 8):
        ids = [2] + torch.randint(5, 12, (n,), generator=g).tolist() + [3]
        lab = [-100] * len(ids)
        for pos in range(1, n + 1, 3):
            lab[pos], ids[pos] = ids[pos], 4
        seqs.append(ids)
        labels.append(lab)
    data = {"masked_ids": seqs, "labels": labels, "token_type_ids": [[0] * len(x) for x in seqs], "nsp": [0] * 5}
    with torch.no_grad():
        want = evaluate_mlm(model, data, Tok, batch_size=2, device=torch.device("cpu"))
        rows = mask_examples(model, data, Tok, torch.device("cpu"), n_seqs=5)
    assert len(rows) == want["masked_tokens"] and 0 < want["mlm_accuracy"] < 1
    assert sum(r["top"][0][0] == r["gold"] for r in rows) / len(rows) == pytest.approx(want["mlm_accuracy"])
    names = Tok.convert_ids_to_tokens(list(range(12)))
    assert [(r["index"], r["position"], r["gold"]) for r in rows] == [
        (i, p, names[y]) for i, lab in enumerate(labels) for p, y in enumerate(lab) if y != -100
    ]
    assert all(r["left"].endswith(names[seqs[r["index"]][r["position"] - 1]].removeprefix("##")) for r in rows)


def test_unigram_baseline_by_hand():
    """The baseline the pretraining tests compare with (support.baselines): add-one over the whole vocabulary."""
    from support.baselines import mlm_baselines

    b = mlm_baselines([[1, 5, 5, 6, 1]], [[-100, 5, 6, -100, 7]], [0, 1, 1], vocab_size=10, special_ids=[1])
    # training counts (specials dropped): 5 x2, 6 x1 -> p = 3/13, 2/13, 1/13 for 5, 6, 7
    assert b.unigram_perplexity == pytest.approx(math.exp(-(math.log(3) + math.log(2) - 3 * math.log(13)) / 3))
    assert b.most_frequent_rate == pytest.approx(1 / 3) and b.nsp_majority == pytest.approx(2 / 3)
    assert b.masked_tokens == 3


# -- end to end ---------------------------------------------------------------------


def _events(run, cls):
    return [e for e in run.events() if isinstance(e, cls)]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pre")
    m = micro_manifest(tmp, epochs=2)
    run = run_experiment(m, "pre")
    return m, run


def test_run_finishes_with_table_and_checkpoints(finished_run):
    """Finished; the epochs table holds the job's own evaluations (epoch 0 = before training), one
    row per epoch; one complete checkpoint per epoch end, the newest holding exactly the final
    model's weights; the final model is saved with its tokenizer."""
    from safetensors.torch import load_file

    from engine.events import CheckpointSaved

    _, run = finished_run
    assert run.status()["status"] == "finished", run.status()
    table = run.read_table("epochs")
    assert table.column("epoch") == [0, 1, 2]
    assert table.columns == ("epoch", "train_loss", "mlm_perplexity", "mlm_accuracy", "nsp_accuracy", "elapsed_s")
    evals = _events(run, EvalFinished)
    assert [e.epoch for e in evals] == [0, 1, 2]
    for col in ("mlm_perplexity", "mlm_accuracy", "nsp_accuracy"):
        assert table.column(col) == pytest.approx([e.metrics[col] for e in evals]), col
    assert table.column("train_loss")[0] is None and all(x > 0 for x in table.column("train_loss")[1:])
    ppl = table.column("mlm_perplexity")
    # 20 steps of bert-micro: learning has begun (~0.65x here); the demo test holds learning to baselines
    assert ppl[-1] < 0.8 * ppl[0], ppl

    # 160 pairs / 16 per batch = 10 optimizer steps per epoch: a checkpoint at each epoch end
    saved = _events(run, CheckpointSaved)
    assert [(c.epoch, c.step) for c in saved] == [(1, 10), (2, 20)]
    folders = run.checkpoints_newest_first()
    assert [f.name for f in folders] == ["step-00000020", "step-00000010"]
    assert [run.path / c.path for c in reversed(saved)] == folders
    for folder in folders:
        assert {p.name for p in folder.iterdir()} >= {"model.safetensors", "optimizer.pt", "state.json"}
    newest = read_json(folders[0] / "state.json")
    assert newest["global_step"] == 20 and newest["epoch"] == 2
    assert run.last_checkpoint() == folders[0]
    final = run.final_model()
    assert final is not None and (final / "tokenizer.json").exists()
    ckpt, model = load_file(str(folders[0] / "model.safetensors")), load_file(str(final / "model.safetensors"))
    assert ckpt.keys() == model.keys() and all(torch.equal(ckpt[k], model[k]) for k in ckpt)
    older = load_file(str(folders[1] / "model.safetensors"))
    assert any(not torch.equal(older[k], ckpt[k]) for k in ckpt), "the epoch-1 checkpoint holds epoch-1 weights"

    steps = _events(run, StepLogged)
    assert [s.step for s in steps] == sorted({s.step for s in steps}) and steps[-1].step == 20
    s = steps[-1]
    assert s.tokens_per_s > 0 and s.eta_s is not None and set(s.parts) == {"mlm_loss", "nsp_loss"}
    assert s.grad_norm is not None and s.learning_rate >= 0
    estimate = run.config()["memory_estimate"]  # recorded by the job for its device
    assert estimate["device"] == "cpu" and estimate["total_gib"] > 0 and estimate["activations_gib"] > 0


def test_logged_parameter_counts_agree_with_the_model_built(finished_run):
    """Preflight counts before the vocabulary is trained, so its figure is an upper bound; the model line is exact."""
    import re

    from transformers import AutoConfig

    from engine.models.params import rows_for

    _, run = finished_run
    lines = [e.message for e in _events(run, LogEmitted)]
    exact = sum(r.count for r in rows_for(AutoConfig.from_pretrained(str(run.final_model())), "base"))
    preflight = next(x for x in lines if x.startswith("preflight ok"))
    assert preflight.startswith("preflight ok: at most ") and "vocab_size = 2,000" in preflight, preflight
    bound = int(re.search(r"at most ([\d,]+)", preflight).group(1).replace(",", ""))
    assert bound >= exact
    assert f"model: {exact:,} parameters (base)" in "\n".join(lines), lines


def test_eval_masks_identical_across_epochs(finished_run):
    m, run = finished_run
    evals = _events(run, EvalFinished)
    assert len({e.metrics["masked_tokens"] for e in evals}) == 1
    # regenerating the evaluation set from scratch gives the same masks (fixed seed, not the cache)
    import shutil

    from engine.models.presets import cache_root
    from engine.tasks.pretrain import prepare_split

    class Ctx:
        manifest, exp = m, m.get("pre")

        def emit(self, e):
            pass

        def log(self, *a, **k):
            pass

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(run.final_model()))
    a = prepare_split(Ctx(), tok, "test", 7, mask=True)
    shutil.rmtree(cache_root() / "pretrain-data")
    b = prepare_split(Ctx(), tok, "test", 7, mask=True)
    assert list(a["masked_input_ids"]) == list(b["masked_input_ids"])
    assert list(a["mlm_labels"]) == list(b["mlm_labels"])


def test_cached_tokenization_reused(tmp_path):
    """The second job with the same data, tokenizer and recipe builds no pairs: both splits come from the cache."""
    m2 = parse_text(micro_text(tmp_path / "runs", epochs=1, max_steps=1), tmp_path / "m.toml")
    logs: list[list[str]] = []
    for _ in range(2):  # the first fills the cache (another test may have emptied it), the second must reuse it
        logs.append([])
        sink = CallbackSink(lambda e, out=logs[-1]: out.append(getattr(e, "message", "")))
        run = run_experiment(m2, "pre", sinks=[sink])
        assert run.status()["status"] == "finished"
    second = logs[-1]
    for split in ("train", "test"):
        assert any(x.startswith(f"{split}: reusing cached pairs") for x in second), (split, second)
    assert not any("NSP pairs built" in x for x in second), second


def test_pause_resume_cancel_and_resume_continuity(tmp_path):
    m = micro_manifest(tmp_path, epochs=2)
    state = {"paused_at": None, "steps_while_paused": 0}
    holder = {}

    def on_event(e):
        run = holder.get("run")
        if isinstance(e, StepLogged):
            if state["paused_at"] is not None and holder.get("paused"):
                state["steps_while_paused"] += 1
            if holder.get("resumed") and state.get("cancelled_at") is None:
                # the first step after resuming: cancel now, from the job's own thread, so the
                # request is there before the next step boundary however fast the machine is
                state["cancelled_at"] = e.step
                run.request("cancel")
            if e.step == 4 and run is not None:
                run.request("pause")
                state["paused_at"] = e.step
        if type(e).__name__ == "RunStarted":
            holder["run"] = RunStore(m.runs_dir).get(f"{e.experiment}/{e.run_id}")

    t = threading.Thread(
        target=lambda: holder.setdefault("result", run_experiment(m, "pre", sinks=[CallbackSink(on_event)]))
    )
    t.start()
    deadline = time.time() + 60
    while time.time() < deadline and not (holder.get("run") and holder["run"].status()["status"] == "paused"):
        time.sleep(0.05)
    run = holder["run"]
    assert run.status()["status"] == "paused"
    holder["paused"] = True
    n_before = len(_events(run, StepLogged))
    time.sleep(0.6)
    assert len(_events(run, StepLogged)) == n_before, "no steps while paused"
    holder["paused"] = False
    holder["resumed"] = True
    run.request("resume")
    t.join(60)
    assert run.status()["status"] == "cancelled"
    assert state["paused_at"] < state["cancelled_at"] < _events(run, StepLogged)[-1].total_steps  # trained on, then
    assert run.last_checkpoint() is not None

    # resume the same run: it finishes, each epoch once, steps continue without duplicates
    run_experiment(m, "pre", resume=run)
    assert run.status()["status"] == "finished"
    table = run.read_table("epochs")
    assert table.column("epoch") == [0, 1, 2]
    steps = [s.step for s in _events(run, StepLogged)]
    assert steps == sorted(set(steps)) and steps[-1] == _events(run, StepLogged)[-1].total_steps

    # and lands where an uninterrupted run with the same seed lands
    ref = run_experiment(m, "pre")
    ref_ppl = ref.read_table("epochs").column("mlm_perplexity")
    got_ppl = table.column("mlm_perplexity")
    assert got_ppl == pytest.approx(ref_ppl, rel=1e-3)


def test_a_half_precision_checkpoint_trains_with_fp32_weights(tmp_path):
    """transformers 5 loads a checkpoint in its stored dtype by default: training needs fp32 master weights."""
    from types import SimpleNamespace

    import torch
    from transformers import BertForPreTraining

    from engine.models.presets import preset_config
    from engine.tasks.common import TaskInputs
    from engine.tasks.pretrain import pretraining_model

    BertForPreTraining(preset_config("bert-micro", vocab_size=64)).to(torch.float16).save_pretrained(tmp_path)
    exp = SimpleNamespace(seed=0, max_seq_length=32, name="pre")
    inputs = TaskInputs(exp=exp, mirror="", source=SimpleNamespace(path=str(tmp_path)), kind="pretrained")
    model = pretraining_model(inputs, tok=[0] * 64)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
