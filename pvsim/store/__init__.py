"""The readings the pipeline wrote, read back from the daily CSVs: per-day aggregates and their
integrator (`aggregates`), the store that loads, persists and queries them (`readingstore`, one
shard's files; `shardedstore`, a fleet's shards behind one face), and the removal of old days
(`retention`).

Reads the CSV directory and writes only its own aggregate files there (retention removes old
days' files). May import `pvsim.config`, `pvsim.model` and `pvsim.pipeline`; nothing of api, cli
or daemons.
"""
