"""Training: the Trainer's loop (``trainer``), its named events (``callbacks``) and the built-in callbacks
(``unfreeze``, ``feature_caching``, ``nonfinite``, ``checkpointing``, ``metrics``), its reports, the run folder.
"""
