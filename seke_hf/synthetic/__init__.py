"""Clearly synthetic faces written in the raw layouts of the six corpora, for the demo, tests and benchmarks.

No licensed data is shipped or needed: every image is drawn by code, and every label file follows the format
specification of its corpus (`docs/corpora.md`). One module per corpus layout; `faces` draws the images.
"""
