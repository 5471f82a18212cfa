"""One `datasets` builder per corpus (shipped as `seke_hf.loading_scripts`); the shared base is `corpus_builder`."""
