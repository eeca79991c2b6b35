"""Data sets of the simulator: the CLEVR-like generator (VQA and captions), sentiment text
preparation, PyTorch loaders for the CLEVR v1.0 and aclImdb layouts, the unified instruction
template of the M4SC paper with its collator, and the task metrics.

Modules: ``attributes`` (CLEVR vocabulary), ``camera``, ``render``, ``scene``, ``programs``
(CLEVR program executor), ``questions``, ``captions``, ``clevr_generator``, ``clevr_stats``,
``loaders``, ``sentiment``, ``templates``, ``collate``, ``metrics``. Import what you need from the
module itself; this package imports nothing heavy.
"""
