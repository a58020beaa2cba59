"""A fine-tuned run's mistakes, read from the predictions its final evaluation saved.

``lmconsole examples``, the console's Examples tab and the report's error analysis read the
same rows; nothing is recomputed:

- classify: ``predictions.jsonl`` (index, text, gold label, prediction, confidence = the
  predicted class's probability). :meth:`ClassExamples.select` filters (wrong only, one
  confusion-matrix cell) and sorts (most confident first); :meth:`ClassExamples.counts` is
  the confusion matrix of the rows (one row per gold class, one column per predicted class,
  as ``results.json`` stores it).
- qa: ``predictions.json`` (the answers after the no-answer threshold), ``na_scores.json``
  and ``nbest.json``, joined by question id with the evaluation split's questions, contexts
  and gold answers (the split is loaded as the job loaded it: dataset, config, split,
  ``max_eval_samples``). Each question is one of :data:`QA_KINDS`; its confidence is the
  probability n-best gave the chosen candidate (the span, or the null answer).

- pretrain: the masked positions of the first evaluation sequences, each with its gold token
  and the model's top predictions (:class:`MaskExamples`); confidence = the top prediction's
  probability, a mistake = a top prediction that is not the gold token.

Every evaluation's predictions are also kept per epoch (:mod:`engine.store.predictions`):
``epoch=N`` reads those of the evaluation after epoch ``N`` instead of the final one
(:func:`example_epochs` lists them). Runs made before that was saved have the final ones only,
and pretraining runs made before it have none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError
from engine.store.predictions import epoch_label, read_epoch, saved_epochs
from engine.tables import Table

# How a question's answer is judged; the last three are the mistakes.
CORRECT = "correct"
WRONG_ANSWER = "wrong answer"
ANSWERED_UNANSWERABLE = "answered an unanswerable question"
MISSED_ANSWER = 'said "no answer" to an answerable question'
QA_KINDS = (CORRECT, WRONG_ANSWER, ANSWERED_UNANSWERABLE, MISSED_ANSWER)
QA_MISTAKES = QA_KINDS[1:]


@dataclass(frozen=True)
class ClassRow:
    """One evaluation row of a classification run as its evaluation saved it."""

    index: int  # position in the evaluation split
    text: str
    gold: int
    prediction: int
    confidence: float  # probability of the predicted class

    @property
    def wrong(self) -> bool:
        return self.gold != self.prediction


@dataclass(frozen=True)
class ClassExamples:
    run_name: str
    rows: tuple[ClassRow, ...]
    names: tuple[str, ...]  # class name per label index ("0", "1" when the run recorded none)
    epoch: int | float | None = None  # the evaluation after this epoch; None: the final one

    def name(self, label: int) -> str:
        return self.names[label] if 0 <= label < len(self.names) else str(label)

    def select(
        self, wrong_only: bool = False, cell: tuple[int, int] | None = None, by_confidence: bool = True
    ) -> list[ClassRow]:
        """The rows that pass the filters: only mistakes, or only the confusion cell (gold, predicted);
        most confident first (ties in evaluation order), or in evaluation order."""
        rows = [r for r in self.rows if (not wrong_only or r.wrong)]
        if cell is not None:
            rows = [r for r in rows if (r.gold, r.prediction) == cell]
        if by_confidence:
            rows.sort(key=lambda r: (-r.confidence, r.index))
        return rows

    def counts(self) -> list[list[int]]:
        """The confusion matrix of the saved rows: ``counts()[gold][predicted]``."""
        n = max([len(self.names)] + [max(r.gold, r.prediction) + 1 for r in self.rows])
        m = [[0] * n for _ in range(n)]
        for r in self.rows:
            m[r.gold][r.prediction] += 1
        return m

    def table(self, rows: list[ClassRow] | None = None) -> Table:
        rows = list(self.rows) if rows is None else rows
        return Table(
            "examples",
            ("index", "text", "gold", "prediction", "confidence", "correct"),
            [(r.index, r.text, self.name(r.gold), self.name(r.prediction), r.confidence, not r.wrong) for r in rows],
            title=f"Evaluation examples of {self.run_name}{epoch_words(self.epoch)}",
            notes=("confidence: the probability the model gave its predicted class",),
        )

    def counts_table(self) -> Table:
        m = self.counts()
        rows = [
            (self.name(g), self.name(p), m[g][p], "yes" if g == p else "no")
            for g in range(len(m))
            for p in range(len(m))
        ]
        return Table(
            "example_counts",
            ("gold", "prediction", "count", "correct"),
            rows,
            title=f"Examples per confusion-matrix cell of {self.run_name}{epoch_words(self.epoch)}",
        )


@dataclass(frozen=True)
class QARow:
    """One evaluation question of a QA run, its gold answers and the saved prediction."""

    id: str
    question: str
    context: str
    gold: tuple[str, ...]  # empty: unanswerable
    gold_starts: tuple[int, ...]  # character offset of each gold answer in the context
    prediction: str  # after the no-answer threshold ("" = no answer)
    na_score: float  # null score - best span score
    confidence: float  # n-best probability of the chosen candidate
    f1: float  # official SQuAD F1 against the best gold answer (0-1)
    kind: str  # one of QA_KINDS

    @property
    def wrong(self) -> bool:
        return self.kind != CORRECT

    def marked_context(self, width: int = 240) -> str:
        """The context around the answers, the gold span in ``[[ ]]`` and the predicted one in ``<< >>``.

        The predicted span is placed at its first occurrence in the context (n-best keeps the
        text, not its offset).
        """
        spans = []
        if self.gold:
            spans.append((self.gold_starts[0], self.gold_starts[0] + len(self.gold[0]), "[[", "]]"))
        at = self.context.find(self.prediction) if self.prediction else -1
        if at >= 0:
            spans.append((at, at + len(self.prediction), "<<", ">>"))
        centre = min((s[0] for s in spans), default=0)
        lo = max(0, centre - width // 2)
        hi = min(len(self.context), lo + width)
        marks: list[tuple[int, int, str]] = []  # (position, order, text): closing before opening at one spot
        for s, e, o, c in spans:
            marks += [(s, 1, o), (e, 0, c)]
        out, pos = [], lo
        for p, _, text in sorted(m for m in marks if lo <= m[0] <= hi):
            out += [self.context[pos:p], text]
            pos = p
        out.append(self.context[pos:hi])
        return ("..." if lo > 0 else "") + "".join(out) + ("..." if hi < len(self.context) else "")


@dataclass(frozen=True)
class QAExamples:
    run_name: str
    rows: tuple[QARow, ...]
    threshold: float  # the run's null_score_diff_threshold
    epoch: int | float | None = None  # the evaluation after this epoch; None: the final one

    def select(self, kind: str = "", wrong_only: bool = False, by_confidence: bool = True) -> list[QARow]:
        """The questions of one kind (all when ``kind`` is ""), only the mistakes, most confident first."""
        rows = [r for r in self.rows if (not kind or r.kind == kind) and (not wrong_only or r.wrong)]
        if by_confidence:
            rows.sort(key=lambda r: (-r.confidence, r.id))
        return rows

    def counts(self) -> dict[str, int]:
        """Questions per kind, every kind listed."""
        out = dict.fromkeys(QA_KINDS, 0)
        for r in self.rows:
            out[r.kind] += 1
        return out

    def table(self, rows: list[QARow] | None = None) -> Table:
        rows = list(self.rows) if rows is None else rows
        return Table(
            "examples",
            ("id", "kind", "question", "gold", "prediction", "f1", "confidence", "na_score"),
            [
                (r.id, r.kind, r.question, " | ".join(r.gold), r.prediction, r.f1, r.confidence, r.na_score)
                for r in rows
            ],
            title=f"Evaluation questions of {self.run_name}{epoch_words(self.epoch)}",
            notes=(
                "gold: the gold answers separated by ' | ' (empty: unanswerable); prediction '' = no answer",
                f"na_score = null score - best span score; no answer above {self.threshold:g}",
                "confidence: the n-best probability of the chosen answer (span or no answer)",
            ),
        )

    def counts_table(self) -> Table:
        return Table(
            "example_counts",
            ("kind", "count"),
            list(self.counts().items()),
            title=f"Questions per kind of answer of {self.run_name}{epoch_words(self.epoch)}",
        )


@dataclass(frozen=True)
class MaskRow:
    """One masked position of a pretraining evaluation: the gold token and the model's top predictions."""

    index: int  # evaluation sequence
    position: int  # token position in it
    gold: str
    top: tuple[tuple[str, float], ...]  # (token, probability), most probable first
    gold_probability: float
    left: str  # the masked input before and after the position
    right: str

    @property
    def prediction(self) -> str:
        return self.top[0][0] if self.top else ""

    @property
    def confidence(self) -> float:
        return self.top[0][1] if self.top else 0.0

    @property
    def wrong(self) -> bool:
        return self.prediction != self.gold

    def masked_text(self) -> str:
        """The masked input around the position (``right`` carries its own leading space, if any)."""
        return f"{self.left} [MASK]{self.right}".strip()

    @property
    def rank(self) -> int:
        """The gold token's place among the top predictions (1 = first), 0 when it is not among them."""
        return next((i for i, (t, _) in enumerate(self.top, 1) if t == self.gold), 0)


@dataclass(frozen=True)
class MaskExamples:
    run_name: str
    rows: tuple[MaskRow, ...]
    epoch: int | float | None = None  # the evaluation after this epoch

    def select(self, wrong_only: bool = False, by_confidence: bool = True) -> list[MaskRow]:
        """The masked positions (only those whose top prediction is wrong), most confident first."""
        rows = [r for r in self.rows if not wrong_only or r.wrong]
        if by_confidence:
            rows.sort(key=lambda r: (-r.confidence, r.index, r.position))
        return rows

    def counts(self) -> dict[str, int]:
        """Masked positions by where the gold token came: first, lower in the top predictions, not in them."""
        k = max((len(r.top) for r in self.rows), default=0)
        out = {"top-1": 0, f"top-2..{k}": 0, "not in top": 0}
        for r in self.rows:
            out["top-1" if r.rank == 1 else f"top-2..{k}" if r.rank else "not in top"] += 1
        return out

    def table(self, rows: list[MaskRow] | None = None) -> Table:
        rows = list(self.rows) if rows is None else rows
        return Table(
            "examples",
            ("sequence", "position", "gold", "predicted", "confidence", "gold_probability", "top", "context"),
            [
                (
                    r.index,
                    r.position,
                    r.gold,
                    r.prediction,
                    r.confidence,
                    r.gold_probability,
                    " ".join(f"{t}:{p:.3f}" for t, p in r.top),
                    r.masked_text(),
                )
                for r in rows
            ],
            title=f"Masked positions of {self.run_name}{epoch_words(self.epoch)}",
            notes=(
                "the masked positions of the first evaluation sequences (the split masked once, fixed seed)",
                "confidence: the probability of the top prediction; top: the most probable tokens",
            ),
        )

    def counts_table(self) -> Table:
        return Table(
            "example_counts",
            ("gold token", "count"),
            list(self.counts().items()),
            title=f"Masked positions by the gold token's rank, {self.run_name}{epoch_words(self.epoch)}",
        )


Examples = ClassExamples | QAExamples | MaskExamples


def epoch_words(epoch: int | float | None) -> str:
    if epoch is None:
        return ""
    if not epoch:
        return ", evaluation before training"
    return f", evaluation after epoch {epoch}" if float(epoch).is_integer() else f", evaluation at epoch {epoch:.6g}"


def example_epochs(run) -> list[int | float]:
    """The epochs whose evaluation predictions the run kept (ascending; [] for older runs)."""
    return saved_epochs(run.path)


def load_examples(run, mirror: str = "", epoch: int | float | None = None) -> Examples:
    """The saved evaluation predictions of a classify, qa or pretrain run: the final evaluation's,
    or with ``epoch`` those of the evaluation after that epoch (a UserError when there are none)."""
    name = f"{run.experiment}/{run.run_id}"
    task = run.config().get("task", "")
    if task not in ("classify", "qa", "pretrain"):
        raise UserError(
            f"{name} is a {task or 'unknown'} run: only pretrain, classify and qa runs save evaluation predictions"
        )
    epochs = example_epochs(run)
    if task == "pretrain" and epoch is None:
        if not epochs:
            raise UserError(
                f"{name} saved no masked predictions (runs made before they were saved have none); "
                f'try its model with `lmconsole predict {name} "a sentence with [MASK]"`',
                code=1,
            )
        epoch = epochs[-1]
    if epoch is not None and epoch not in epochs:
        have = f"epochs {', '.join(map(epoch_label, epochs))}" if epochs else "the final evaluation's only"
        raise UserError(f"{name} has no saved predictions of epoch {epoch}: it kept {have}", code=1)
    rows = _epoch_rows(run, name, epoch) if epoch is not None else None
    if task == "classify":
        return classify_examples(run, name, rows, epoch)
    if task == "qa":
        return qa_examples(run, name, mirror, rows, epoch)
    return mask_examples(name, rows or [], epoch)


def _epoch_rows(run, name: str, epoch: int | float) -> list[dict]:
    try:
        return read_epoch(run.path, epoch)
    except (OSError, ValueError) as exc:
        raise UserError(f"{name}: cannot read the predictions of epoch {epoch} ({exc})", code=1) from None


def _damaged(where: str, exc: BaseException) -> UserError:
    return UserError(f"{where} is not a saved prediction ({exc!r}): the file is damaged", code=1)


def mask_examples(name: str, rows: list[dict], epoch: int | float | None) -> MaskExamples:
    out = []
    for n, d in enumerate(rows, 1):
        try:
            top = tuple((str(t), float(p)) for t, p in d["top"])
            out.append(
                MaskRow(
                    int(d["index"]),
                    int(d["position"]),
                    str(d["gold"]),
                    top,
                    float(d["gold_probability"]),
                    str(d.get("left", "")),
                    str(d.get("right", "")),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise _damaged(f"{name}: row {n} of epoch {epoch}", exc) from None
    return MaskExamples(name, tuple(out), epoch)


def _missing(name: str, path: Path) -> UserError:
    return UserError(
        f"{name} has no {path.name}: its final evaluation saved no predictions (is the run finished?)", code=1
    )


def classify_examples(
    run, name: str, saved: list[dict] | None = None, epoch: int | float | None = None
) -> ClassExamples:
    """``saved``: one evaluation's rows (engine.store.predictions); None reads the final ``predictions.jsonl``."""
    path = run.path / "predictions.jsonl"
    lines: list = []
    if saved is None:
        if not path.exists():
            raise _missing(name, path)
        lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for n, line in enumerate(saved if saved is not None else lines, 1):
        if isinstance(line, str) and not line.strip():
            continue
        try:
            d = line if isinstance(line, dict) else json.loads(line)
            rows.append(
                ClassRow(int(d["index"]), str(d["text"]), int(d["label"]), int(d["prediction"]), float(d["confidence"]))
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise _damaged(f"{path}:{n}" if saved is None else f"{name}: row {n} of epoch {epoch}", exc) from None
    final = run.results().get("final", {})
    recorded = final.get("class_names")
    n_classes = max([len(final.get("classes") or [])] + [max(r.gold, r.prediction) + 1 for r in rows])
    if isinstance(recorded, list) and len(recorded) >= n_classes:
        names = tuple(str(x) for x in recorded)
    else:
        names = tuple(str(i) for i in range(n_classes))
    return ClassExamples(name, tuple(rows), names, epoch)


def _read(name: str, path: Path) -> dict:
    if not path.exists():
        raise _missing(name, path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}): the file is damaged", code=1) from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a JSON object keyed by question id: the file is damaged", code=1)
    return data


def qa_kind(gold: list[str], prediction: str) -> str:
    """Which of :data:`QA_KINDS` a prediction is (exact match after SQuAD normalisation is correct)."""
    from engine.metrics.squad_v2 import compute_exact

    answerable = any(gold)
    if not prediction:
        return MISSED_ANSWER if answerable else CORRECT
    if not answerable:
        return ANSWERED_UNANSWERABLE
    return CORRECT if max(compute_exact(g, prediction) for g in gold if g) else WRONG_ANSWER


def _final_answers(run, name: str) -> dict[str, tuple[str, float, float]]:
    """question id -> (answer after the threshold, null - span score, confidence) of the final evaluation."""
    from engine.metrics.qa_postprocess import chosen_probability

    preds = _read(name, run.path / "predictions.json")
    na = _read(name, run.path / "na_scores.json")
    nbest = _read(name, run.path / "nbest.json")
    return {
        q: (str(p), float(na.get(q, float("inf"))), chosen_probability(nbest.get(q, []), str(p)))
        for q, p in preds.items()
    }


def _epoch_answers(name: str, rows: list[dict], epoch: int | float | None) -> dict[str, tuple[str, float, float]]:
    out = {}
    for n, d in enumerate(rows, 1):
        try:
            out[str(d["id"])] = (str(d["prediction"]), float(d["na_score"]), float(d["confidence"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise _damaged(f"{name}: row {n} of epoch {epoch}", exc) from None
    return out


def qa_examples(
    run, name: str, mirror: str = "", saved: list[dict] | None = None, epoch: int | float | None = None
) -> QAExamples:
    """``saved``: one evaluation's rows (engine.store.predictions); None reads the final evaluation's files."""
    from engine.hub.resolve import load_dataset_split
    from engine.metrics.squad_v2 import compute_f1
    from engine.tasks.common import first_line

    answers_of = _final_answers(run, name) if saved is None else _epoch_answers(name, saved, epoch)
    cfg = run.config()
    try:
        ds = load_dataset_split(
            cfg["dataset"], cfg.get("dataset_config", ""), cfg.get("eval_split", "validation"), mirror
        )
    except Exception as exc:  # noqa: BLE001 - any failure to load means the same thing here
        raise UserError(
            f"{name}: cannot load its evaluation split {cfg.get('dataset')}:{cfg.get('eval_split')} "
            f"for the questions and gold answers ({first_line(exc, 200)})",
            code=1,
        ) from None
    limit = int(cfg.get("max_eval_samples") or 0)
    if limit:
        ds = ds.select(range(min(limit, len(ds))))
    rows = []
    for qid, question, context, answers in zip(ds["id"], ds["question"], ds["context"], ds["answers"]):
        if qid not in answers_of:
            raise UserError(
                f"{name}: question {qid} of the evaluation split has no saved prediction: "
                "the dataset changed since the run, or its predictions are damaged",
                code=1,
            )
        gold = [str(t) for t in answers["text"]]
        pred, na_score, confidence = answers_of[qid]
        f1 = max((compute_f1(g, pred) for g in gold), default=float(not pred))
        rows.append(
            QARow(
                id=qid,
                question=question,
                context=context,
                gold=tuple(gold),
                gold_starts=tuple(int(s) for s in answers["answer_start"]),
                prediction=pred,
                na_score=na_score,
                confidence=confidence,
                f1=float(f1),
                kind=qa_kind(gold, pred),
            )
        )
    return QAExamples(name, tuple(rows), float(cfg.get("null_score_diff_threshold", 0.0)), epoch)
