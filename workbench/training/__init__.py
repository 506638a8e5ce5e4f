"""Training: the Trainer's loop (``trainer``), its named events (``callbacks``) and the built-in callbacks
(``unfreeze``, ``feature_cache_callback``, ``nonfinite``, ``checkpoint_callback``, ``metrics``), its reports, the run folder.
"""
