"""SV-UAMC: vision-LLM completion of missing emotion labels (see annotator.py)."""
