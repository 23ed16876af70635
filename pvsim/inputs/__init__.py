"""Data files the models need, read once at start: weather years (EPW), recorded series (PVGIS
and plain CSV), and the factories that build the configured PV and load models from config.

Reads the files it is told to read and nothing else; every malformed file is one DataFileError
naming the file, the line and the problem (exit 78 at startup, as a bad config). May import
`pvsim.config`, `pvsim.logsetup` and `pvsim.model`; nothing of pipeline, store, api, cli or
daemons.
"""
