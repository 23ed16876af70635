"""pvsim-run without its command line: whole days simulated through the pipeline (`simulation`),
shared among worker processes (`workers`) with their progress (`progress`), the aggregates kept
of the rows as they are written (`aggregators`), and the summary they come to (`summary`, plain
data: pvsim.cli prints and draws it).

May import config, logsetup, model, inputs, pipeline and store; nothing of api, cli or daemons.
"""
