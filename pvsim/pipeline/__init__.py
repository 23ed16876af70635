"""Readings on their way from the meter to the CSV: the message schema, RabbitMQ (pika), the
transports of a one-shot run, the PV service that turns readings into rows exactly once, the
daily CSV sink and the range sets behind exactly-once.

Owns the broker connections and the CSV directory. May import `pvsim.config`, `pvsim.logsetup`
and `pvsim.model`; nothing of store, api, cli or daemons.
"""
