"""The readings the pipeline wrote, read back from the daily CSVs: per-day aggregates and their
integrator (`aggregates`), and the store that loads, persists and queries them (`readingstore`).

Reads the CSV directory and writes only its own aggregate files there. May import
`pvsim.config`, `pvsim.model` and `pvsim.pipeline`; nothing of api, cli or daemons.
"""
