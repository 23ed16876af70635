"""One-shot programs: `pvsim-run` (`run`: whole days through the pipeline, then a summary) and its
plot (`plot`, matplotlib when asked for).

May import every layer below (config, model, pipeline, store, api); nothing of daemons.
"""
