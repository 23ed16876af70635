"""pvsim-run's command line: its flags and exit statuses (`run`), the summary it prints as text
or JSON (`render`), and its plot (`plot`, matplotlib when asked for). What a run does is
pvsim.run's.

May import every layer below (config, model, inputs, pipeline, store, api, run); nothing of
daemons.
"""
