"""Try a run's saved model on new input: ``lmconsole predict`` and the console's Try tab.

:func:`load_predictor` loads a finished run's ``model/`` folder once; :meth:`Predictor.predict`
then answers a batch of inputs with the evaluation's own code, so a row of the evaluation set
gets exactly the answer the evaluation saved for it:

- classify: the text tokenised as the job did (``truncation``, ``max_seq_length``), then
  :func:`engine.tasks.classify.class_probabilities`; the answer is the most probable class,
  with every class's probability (class names when the run recorded them);
- qa: question and context made into windows by :func:`engine.tasks.qa.eval_features`
  (``max_seq_length``, ``doc_stride``), logits from :func:`engine.tasks.qa.predict_logits`,
  spans decoded by :func:`engine.metrics.qa_postprocess.postprocess_qa` with the run's
  ``n_best_size`` and ``max_answer_length``; "no answer" when the null score minus the best
  span's score is above the run's ``null_score_diff_threshold``, as evaluation decides;
- pretrain: fill-mask: for each ``[MASK]`` of the text, the ``top_k`` most probable tokens of
  the MLM head with their probabilities.

Inputs and answers are plain dicts (one JSON line each in ``--file`` mode): classify and
pretrain read ``text``, qa reads ``question`` and ``context``. The device is the run's
(``device = "auto"``: CUDA where present) unless one is given; the precision is the run's.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from engine.errors import UserError

# The run's task -> the model head its saved folder holds.
HEADS = {"pretrain": "pretraining", "classify": "classification", "qa": "qa"}
INPUT_KEYS = {"pretrain": ("text",), "classify": ("text",), "qa": ("question", "context")}


@dataclass
class Predictor:
    """A run's model, tokenizer and decoding settings, loaded once for many predictions."""

    task: str  # the run's task: pretrain, classify or qa
    run_name: str  # experiment/run-id, for messages
    model: Any
    tok: Any
    device: Any  # torch.device
    amp: Any  # autocast dtype, None for fp32
    cfg: dict  # the run's config.json
    class_names: list[str] = field(default_factory=list)  # classify: names per label index ("0", "1" without)
    load_s: float = 0.0  # seconds the model took to load

    @property
    def input_keys(self) -> tuple[str, ...]:
        return INPUT_KEYS[self.task]

    def check(self, row: dict, where: str = "") -> None:
        """A UserError naming the missing or empty fields of one input."""
        missing = [k for k in self.input_keys if not isinstance(row.get(k), str) or not row[k].strip()]
        if missing:
            raise UserError(
                f"{where}{' ' if where else ''}needs {' and '.join(self.input_keys)} as text "
                f"(a {self.task} run); missing or empty: {', '.join(missing)}"
            )

    def predict(self, rows: list[dict], top_k: int = 5) -> list[dict]:
        """One answer per input row, computed in batches of the run's ``eval_batch_size``."""
        import torch

        for i, row in enumerate(rows):
            self.check(row, f"input {i + 1}" if len(rows) > 1 else "the input")
        if not rows:
            return []
        with torch.no_grad(), torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            if self.task == "classify":
                return self._classify(rows)
            if self.task == "qa":
                return self._qa(rows)
            return self._fill_mask(rows, top_k)

    def timed(self, rows: list[dict], top_k: int = 5) -> tuple[list[dict], float]:
        """:meth:`predict` and the seconds it took (the console shows them)."""
        t0 = time.perf_counter()
        out = self.predict(rows, top_k)
        return out, time.perf_counter() - t0

    def _batch_size(self) -> int:
        return int(self.cfg.get("eval_batch_size") or 64)

    def _classify(self, rows: list[dict]) -> list[dict]:
        from engine.tasks.classify import class_probabilities

        texts = [r["text"] for r in rows]
        enc = self.tok(texts, truncation=True, max_length=int(self.cfg["max_seq_length"]))["input_ids"]
        probs = class_probabilities(self.model, enc, self.tok.pad_token_id, self._batch_size(), self.device)
        out = []
        for text, p in zip(texts, probs):
            k = max(range(len(p)), key=p.__getitem__)  # the first most probable class, as evaluation takes it
            names = self.class_names or [str(i) for i in range(len(p))]
            out.append(
                {
                    "text": text,
                    "prediction": k,
                    "label": names[k],
                    "confidence": p[k],
                    "probabilities": {names[i]: v for i, v in enumerate(p)},
                }
            )
        return out

    def _qa(self, rows: list[dict]) -> list[dict]:
        from engine.metrics.qa_postprocess import postprocess_qa
        from engine.tasks.qa import eval_features, predict_logits

        cfg = self.cfg
        max_len, stride = int(cfg["max_seq_length"]), int(cfg["doc_stride"])
        for n, row in enumerate(rows, 1):
            # the windows need room for the question, 3 special tokens and more context than the stride
            room = max_len - 3 - len(self.tok(row["question"].lstrip(), add_special_tokens=False)["input_ids"])
            if room <= stride:
                raise UserError(
                    f"question {n} is too long for this run's windows (max_seq_length {max_len}, "
                    f"doc_stride {stride}): shorten it to under {max_len - 3 - stride} tokens"
                )
        ids = [str(i) for i in range(len(rows))]  # decoding's keys: row positions, so repeated ids cannot collide
        data = {"question": [r["question"] for r in rows], "context": [r["context"] for r in rows]}
        feats, input_ids, types = eval_features(self.tok, data, max_len, stride)
        start, end = predict_logits(
            self.model, input_ids, types, self.tok.pad_token_id, self._batch_size(), self.device
        )
        examples = [{"id": q, "context": c} for q, c in zip(ids, data["context"])]
        raw, na_scores, nbest = postprocess_qa(
            examples,
            feats,
            start,
            end,
            n_best_size=int(cfg.get("n_best_size", 20)),
            max_answer_length=int(cfg.get("max_answer_length", 30)),
            null_score_diff_threshold=math.inf,  # every question's best span; the threshold is applied below
        )
        thresh = float(cfg.get("null_score_diff_threshold", 0.0))
        out = []
        for q, row in zip(ids, rows):
            cands = nbest.get(q, [])
            span = next((c for c in cands if c["text"]), None)
            null = next((c for c in cands if not c["text"]), None)
            no_answer = na_scores[q] > thresh
            out.append(
                {
                    **({"id": row["id"]} if "id" in row else {}),
                    "question": row["question"],
                    "answer": "" if no_answer else raw[q],
                    "span": raw[q],
                    "span_score": span["score"] if span else None,
                    "span_probability": span["probability"] if span else None,
                    "null_score": null["score"] if null else None,
                    "na_score": na_scores[q],  # null score - best span score; above the threshold: no answer
                    "threshold": thresh,
                    "no_answer": no_answer,
                }
            )
        return out

    def _fill_mask(self, rows: list[dict], top_k: int) -> list[dict]:
        import torch

        from engine.tasks.common import pad_batch

        mask_id = self.tok.mask_token_id
        mask = self.tok.mask_token
        enc = self.tok([r["text"] for r in rows], truncation=True, max_length=int(self.cfg["max_seq_length"]))
        out = []
        for row, ids in zip(rows, enc["input_ids"]):
            positions = [i for i, t in enumerate(ids) if t == mask_id]
            if not positions:
                raise UserError(f"no {mask} in {row['text']!r}: put {mask} where the model should fill in a word")
            x = pad_batch([ids], self.tok.pad_token_id).to(self.device)
            logits = self.model(input_ids=x, attention_mask=(x != self.tok.pad_token_id).long()).prediction_logits
            probs = logits[0].float().softmax(-1)
            masks = []
            for pos in positions:
                p, idx = torch.topk(probs[pos], min(top_k, probs.shape[-1]))
                tokens = self.tok.convert_ids_to_tokens(idx.tolist())
                masks.append(
                    {"position": pos, "top": [{"token": t, "probability": float(v)} for t, v in zip(tokens, p)]}
                )
            out.append({"text": row["text"], "masks": masks})
        return out

    def close(self) -> None:
        """Let the model's memory go (GPU memory too) once nothing else holds it."""
        self.model = None
        if getattr(self.device, "type", "") == "cuda":
            import torch

            torch.cuda.empty_cache()


def load_predictor(run, device: str = "", threads: int = 0) -> Predictor:
    """The finished ``run``'s saved model on ``device`` (default: the run's ``device``), ready to predict.

    ``threads``: on the CPU, torch's threads for this whole process (0 leaves them as they are).
    The console asks for 1: one input at a time is too little work to share, and on cores busy
    with training jobs each extra thread waits for a core at every operator (median 19 ms with 1
    thread against 60-280 ms with 2 on a loaded 2-core box: BENCHMARKS.md).
    A UserError when the run has no saved model or its task makes none (inspect, push, study).
    """
    import transformers

    from engine.device import pick_device
    from engine.errors import JobError
    from engine.models.presets import model_class
    from engine.train.loop import autocast_dtype

    cfg = run.config()
    name = f"{run.experiment}/{run.run_id}"
    task = cfg.get("task", "")
    if task not in HEADS:
        raise UserError(f"{name} is a {task or 'unknown'} run: predict needs a pretrain, classify or qa run")
    folder = run.final_model()
    if folder is None:
        status = run.status().get("status", "unknown")
        raise UserError(f"{name} has no saved model (it is {status}): predict needs a finished run")
    t0 = time.perf_counter()
    try:
        dev = pick_device(device or str(cfg.get("device", "auto")))
        amp = autocast_dtype(str(cfg.get("precision", "auto")), dev)
    except JobError as exc:
        raise UserError(f"{exc}; choose another with --device", code=2) from None
    except RuntimeError as exc:  # torch rejects the device string
        raise UserError(f"device {device!r} is not a torch device ({exc}): use cpu, cuda or cuda:N") from None
    if threads and dev.type == "cpu":
        import torch

        torch.set_num_threads(threads)
    trust = bool(cfg.get("trust_remote_code"))
    tok = transformers.AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust)
    config = transformers.AutoConfig.from_pretrained(str(folder), trust_remote_code=trust)
    transformers.utils.logging.disable_progress_bar()  # a bar per load would garble the command's output
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # its "weights not used" notes are not news here
    try:
        model = model_class(HEADS[task], config).from_pretrained(str(folder), trust_remote_code=trust)
    finally:
        transformers.logging.set_verbosity(level)
    model = model.to(dev).eval()
    names: list[str] = []
    if task == "classify":
        recorded = run.results().get("final", {}).get("class_names")
        n = int(getattr(config, "num_labels", 2))
        names = [str(x) for x in recorded] if isinstance(recorded, list) and len(recorded) == n else []
        names = names or [str(i) for i in range(n)]
    return Predictor(task, name, model, tok, dev, amp, cfg, names, time.perf_counter() - t0)


def read_jsonl_inputs(path, keys: tuple[str, ...]) -> list[dict]:
    """The input rows of a ``--file``: one JSON object per line with ``keys`` (blank lines skipped).

    A line that is not a JSON object, or lacks a key, is a UserError naming the line.
    """
    import json
    from pathlib import Path

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise UserError(f"{path}:{n}: not a JSON line ({exc})") from None
        if not isinstance(row, dict) or any(not isinstance(row.get(k), str) for k in keys):
            raise UserError(f"{path}:{n}: each line must be a JSON object with {', '.join(keys)} as text")
        rows.append(row)
    if not rows:
        raise UserError(f"{path} has no input lines: one JSON object per line with {', '.join(keys)}")
    return rows


def bar(p: float, width: int = 20) -> str:
    """A probability as a bar of ``width`` cells (eighths of a cell for the remainder)."""
    eighths = round(max(0.0, min(1.0, p)) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")).ljust(width)


def answer_lines(task: str, out: dict) -> list[str]:
    """One prediction as text lines: ``lmconsole predict`` prints them, the console's Try tab shows them."""
    if task == "classify":
        lines = [f"{out['text']!r} -> {out['label']} ({out['confidence']:.3f})"]
        width = max(len(k) for k in out["probabilities"])
        lines += [f"  {k:<{width}} {bar(v)} {v:.4f}" for k, v in out["probabilities"].items()]
        return lines
    if task == "qa":
        verdict = "no answer" if out["no_answer"] else repr(out["answer"])
        span = f"{out['span']!r} (score {out['span_score']:.4f})" if out["span"] else "none"
        null = f"{out['null_score']:.4f}" if out["null_score"] is not None else "-"
        return [
            f"Q: {out['question']}",
            f"A: {verdict}",
            f"  best span {span}; null score {null}; "
            f"null - span {out['na_score']:.4f} {'>' if out['no_answer'] else '<='} threshold {out['threshold']:g}",
        ]
    lines = [out["text"]]
    for n, m in enumerate(out["masks"], 1):
        lines.append(f"  mask {n} (token {m['position']}):")
        lines += [f"    {t['token']:<16} {bar(t['probability'])} {t['probability']:.4f}" for t in m["top"]]
    return lines
