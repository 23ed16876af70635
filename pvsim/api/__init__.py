"""HTTP APIs as plain callables, independent of any server: the JOI Energy smart-meter API
(`joi`) and the problem bodies every HTTP error carries (`problem`).

May import `pvsim.config`, `pvsim.model`, `pvsim.pipeline` and `pvsim.store`; nothing of cli or
daemons (the daemons serve it, not the other way round).
"""
