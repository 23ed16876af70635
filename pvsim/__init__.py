"""pvsim: a building's grid meter and a PV plant, simulated over RabbitMQ.

The package is layered; each layer imports only from the layers listed before it (a test,
tests/test_layers.py, keeps this rule):

    config, logsetup   the YAML config as frozen dataclasses; logging. Read by every layer.
    model/             pure computation: time, noise, sun, PV and meter models, energy, price plans
    inputs/            data files read once at start (weather, series) and the model factories
    pipeline/          readings on their way: messages, RabbitMQ, transports, PV service, CSV sink
    store/             the readings written, read back from the CSVs, and their daily aggregates
    api/               the JOI Energy API over the store and the PV service
    run/               pvsim-run's simulation, worker processes, aggregates and summary (imports
                       neither api nor the programs)
    cli/, daemons/     the programs: pvsim-run (cli, with run/), pvsim-meter and pvsim-pv
                       (daemons); neither imports the other
"""

__version__ = "0.1.0"
