"""The tests of the 3-node RabbitMQ cluster rig (tests/support/rig.py) and of pvsim on it. A
package, so that its conftest is imported as `cluster.conftest`, beside the suite's top-level one."""
