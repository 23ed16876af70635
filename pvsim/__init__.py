"""pvsim: a building's grid meter and a PV plant, simulated over RabbitMQ."""

__version__ = "0.1.0"
