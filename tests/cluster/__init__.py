"""The 3-node RabbitMQ cluster rig (rig.py) and its tests. A package, so that its conftest is
imported as `cluster.conftest` and never shadows the suite's top-level `conftest` module."""
