"""The Hugging Face Hub: where a dataset or model comes from, and publishing a model.

``resolve`` (embedded corpus, local folder, mirror, Hub, HF cache; is the Hub reachable),
``publish`` (the staged upload folder, the model card, the upload itself).

May import: ``engine.data`` and the leaves.
"""
