"""The long-running programs pvsim-meter (`meter`) and pvsim-pv (`pv`), and what they share: the
lifecycle (flags, signals, worker threads, exit codes), the broker link's state, the HTTP
endpoint, Prometheus metrics, sd_notify and the meter's buffer.

May import every layer below (config, model, pipeline, store, api); nothing of cli.
"""
