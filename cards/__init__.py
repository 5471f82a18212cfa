"""Jinja templates and source-corpus metadata for the FEID/FEAB dataset cards."""
