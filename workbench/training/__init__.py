"""Training: the Trainer's loop (``trainer``), its named events (``callbacks``), their order and saved state
(``callback_states``), the built-in callbacks (``unfreeze``, ``feature_cache_callback``, ``nonfinite``,
``checkpoint_callback``, ``metrics``), the checkpoint (``checkpoint_file``), its reports, the run folder.
"""
