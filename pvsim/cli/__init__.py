"""One-shot programs: `pvsim-run` (`run`: whole days through the pipeline, then a summary), the
worker processes it shares the days among (`workers`), and its plot (`plot`, matplotlib when
asked for).

May import every layer below (config, model, pipeline, store, api); nothing of daemons.
"""
