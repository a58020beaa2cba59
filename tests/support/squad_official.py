"""The official SQuAD v2 evaluation (evaluate-v2.0.py), rewritten as a function to cross-check ours."""

from __future__ import annotations

import collections
import re
import string


def o_normalize(s):
    def remove_articles(text):
        return re.sub(re.compile(r"\b(a|an|the)\b", re.UNICODE), " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def o_tokens(s):
    return o_normalize(s).split() if s else []


def o_exact(a_gold, a_pred):
    return int(o_normalize(a_gold) == o_normalize(a_pred))


def o_f1(a_gold, a_pred):
    gold_toks, pred_toks = o_tokens(a_gold), o_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def official_eval(dataset, preds, na_probs, na_prob_thresh):
    qid_to_has_ans = {}
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                qid_to_has_ans[qa["id"]] = bool(qa["answers"])
    has_ans_qids = [k for k, v in qid_to_has_ans.items() if v]
    no_ans_qids = [k for k, v in qid_to_has_ans.items() if not v]
    exact_raw, f1_raw = {}, {}
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                qid = qa["id"]
                gold = [a["text"] for a in qa["answers"] if o_normalize(a["text"])] or [""]
                exact_raw[qid] = max(o_exact(a, preds[qid]) for a in gold)
                f1_raw[qid] = max(o_f1(a, preds[qid]) for a in gold)

    def apply(scores):
        return {q: float(not qid_to_has_ans[q]) if na_probs[q] > na_prob_thresh else s for q, s in scores.items()}

    def make_eval(ex, f1, qid_list=None):
        if not qid_list:
            total = len(ex)
            return {"exact": 100.0 * sum(ex.values()) / total, "f1": 100.0 * sum(f1.values()) / total, "total": total}
        total = len(qid_list)
        return {
            "exact": 100.0 * sum(ex[k] for k in qid_list) / total,
            "f1": 100.0 * sum(f1[k] for k in qid_list) / total,
            "total": total,
        }

    def find_best_thresh(scores):
        num_no_ans = sum(1 for k in qid_to_has_ans if not qid_to_has_ans[k])
        cur_score = best_score = num_no_ans
        best_thresh = 0.0
        for qid in sorted(na_probs, key=lambda k: na_probs[k]):
            if qid not in scores:
                continue
            if qid_to_has_ans[qid]:
                diff = scores[qid]
            else:
                diff = -1 if preds[qid] else 0
            cur_score += diff
            if cur_score > best_score:
                best_score, best_thresh = cur_score, na_probs[qid]
        return 100.0 * best_score / len(scores), best_thresh

    ex_th, f1_th = apply(exact_raw), apply(f1_raw)
    out = make_eval(ex_th, f1_th)
    if has_ans_qids:
        out.update({f"HasAns_{k}": v for k, v in make_eval(ex_th, f1_th, has_ans_qids).items()})
    if no_ans_qids:
        out.update({f"NoAns_{k}": v for k, v in make_eval(ex_th, f1_th, no_ans_qids).items()})
    out["best_exact"], out["best_exact_thresh"] = find_best_thresh(exact_raw)
    out["best_f1"], out["best_f1_thresh"] = find_best_thresh(f1_raw)
    return out
