"""Helpers shared by the tests and the benches, one module per concept.

- `paths`: where the clone is and which Python runs the programs.
- `net`: free loopback ports and a TCP proxy a test can take down.
- `rabbit`: the AMQP address the tests use, a private RabbitMQ node, deleting a test's topology.
- `pvsimconfig`: a config file of a test's own (names, ports, directories).
- `daemons`: pvsim daemons as subprocesses, and their HTTP endpoints (/healthz, /metrics).
- `csvfiles`: what the daily CSV files hold, and the exactly-once check over them.
- `waiting`: the one `wait_for`.
- `disk`: a tiny tmpfs that really fills up.
- `stubbroker`: RabbitMQ in process (pvsim's real Topology, Publisher and Consumer over a stub
  link), so the daemons' message logic runs in the fast tier.
- `energy`: the energy of a list of samples, through the product's integrator.

Fixtures live in tests/conftest.py; these modules hold no fixture and import no pytest, so that a
bench (`/usr/bin/python3 bench/x.py` from the clone with PYTHONPATH=.) imports them as well as a test
(`from tests.support.daemons import http_get`).
"""
