"""The command line of the RabbitMQ cluster rig (tests/support/rig.py), to run a cluster by hand:

    /usr/bin/python3 -m tests.cluster.rig up [DIR] [--nodes N]   # prints the AMQP URLs
    /usr/bin/python3 -m tests.cluster.rig status [DIR]
    /usr/bin/python3 -m tests.cluster.rig ctl [DIR] NODE -- list_queues name leader
    /usr/bin/python3 -m tests.cluster.rig kill|stop|start [DIR] NODE
    /usr/bin/python3 -m tests.cluster.rig down [DIR] [--keep-logs]

The rig itself (layout, ports, what RabbitMQ 3.10.8 surprised us with) is documented in
tests/support/rig.py, where the tests and the benches import it from.
"""

from __future__ import annotations

import argparse
import atexit
import sys
from pathlib import Path

from tests.support.rig import BLOCK, DEFAULT_DIR, FIRST_BASE, Cluster, ClusterError


def _print_rig(rig: Cluster) -> None:
    for node in rig.nodes:
        extra = "".join(f"  {label} http://127.0.0.1:{port}/" for label, port in
                        (("management", node.management_port), ("prometheus", node.prometheus_port))
                        if port)
        print(f"node {node.index}  {node.state:<11} {node.name}  {node.url}{extra}")
    print(f"directory {rig.dir}   (logs: {rig.dir}/node*/log/)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m tests.cluster.rig",
        description="A RabbitMQ cluster on this host for pvsim's tests (see the module docstring).")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a cluster in DIR and print its AMQP URLs")
    up.add_argument("dir", nargs="?", default=str(DEFAULT_DIR))
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument("--port-base", type=int, help=f"first port of the block (default: the first "
                    f"free block from {FIRST_BASE} in steps of {BLOCK})")
    up.add_argument("--plugins", default="", help="comma-separated: management,prometheus")
    down = sub.add_parser("down", help="stop the cluster of DIR and remove DIR")
    down.add_argument("dir", nargs="?", default=str(DEFAULT_DIR))
    down.add_argument("--keep-logs", action="store_true", help="remove only the data")
    status = sub.add_parser("status", help="the nodes of DIR and what node 0 says of the cluster")
    status.add_argument("dir", nargs="?", default=str(DEFAULT_DIR))
    ctl = sub.add_parser("ctl", help="rabbitmqctl against node I of DIR: ctl [DIR] I -- ARGS...")
    ctl.add_argument("dir", nargs="?", default=str(DEFAULT_DIR))
    ctl.add_argument("node", type=int)
    ctl.add_argument("args", nargs=argparse.REMAINDER)
    for name in ("stop", "kill", "start"):
        p = sub.add_parser(name, help=f"{name} node I of DIR")
        p.add_argument("dir", nargs="?", default=str(DEFAULT_DIR))
        p.add_argument("node", type=int)
    argv = sys.argv[1:] if argv is None else list(argv)
    passed: list[str] = []
    if argv[:1] == ["ctl"] and "--" in argv:   # argparse mangles what follows `--`: keep it aside
        cut = argv.index("--")
        argv, passed = argv[:cut], argv[cut + 1:]
    args = parser.parse_args(argv)
    if args.command == "ctl":
        args.args = passed + list(args.args)
    try:
        if args.command == "up":
            directory = Path(args.dir)
            if (directory / "rig.json").exists() and any(
                    n.alive() for n in Cluster.attach(directory).nodes):
                print(f"a rig already runs in {directory}; `down {directory}` first", file=sys.stderr)
                return 1
            if (directory / "rig.json").exists():
                Cluster.attach(directory).close()   # what a dead rig left there
            if directory.exists() and any(directory.iterdir()):
                print(f"{directory} is not empty; give a new or empty directory", file=sys.stderr)
                return 1
            plugins = tuple(p for p in args.plugins.split(",") if p)
            rig = Cluster(directory, args.nodes, port_base=args.port_base, plugins=plugins,
                          die_with_parent=False)
            atexit.unregister(rig._atexit)    # the nodes outlive this command
            try:
                rig.start()
            except BaseException:
                rig.close(keep_logs=True)
                raise
            _print_rig(rig)
            print(f"stop it with: /usr/bin/python3 -m tests.cluster.rig down {rig.dir}")
            return 0
        rig = Cluster.attach(args.dir)
        if args.command == "down":
            rig.close(keep_logs=args.keep_logs)
            print(f"stopped {len(rig.nodes)} nodes" + ("" if args.keep_logs else f", removed {rig.dir}"))
        elif args.command == "status":
            _print_rig(rig)
            up_nodes = [n for n in rig.nodes if n.alive()]
            if up_nodes:
                print(rig.ctl(up_nodes[0].index, "cluster_status", timeout=60).stdout)
        elif args.command == "ctl":
            proc = rig.ctl(args.node, *args.args, timeout=600)
            sys.stdout.write(proc.stdout)
            sys.stderr.write(proc.stderr)
            return proc.returncode
        else:
            rig.die_with_parent = False
            getattr(rig, args.command)(args.node)
            _print_rig(rig)
        return 0
    except ClusterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
