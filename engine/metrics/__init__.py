"""What a number means: metrics by their official definitions, their scales, and flags.

``classification``, ``squad_v2`` (the official evaluate-v2.0 semantics), ``qa_postprocess``
(spans from logits), ``text`` (BLEU, ROUGE, METEOR offline), ``scale`` (0-1 or 0-100),
``flags`` (results that look degenerate). Pure functions; imports nothing from the engine.
"""
