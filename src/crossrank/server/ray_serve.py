"""The same HTTP app on Ray Serve: replicas, autoscaling on queue length, one batcher per replica.

Each replica builds the whole app itself (``__serve_build_asgi_app__``), so it loads its own models
and runs crossrank's own cross-request batcher; Ray Serve spreads requests over replicas and adds or
removes replicas. Endpoints, limits, errors and auth are exactly the single-process server's.

``serve run crossrank.server.ray_serve:app`` deploys the built-in model (or ``$CROSSRANK_CONFIG``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass, replace
from typing import Any

from crossrank.checks import ray_address
from crossrank.errors import MissingDependencyError
from crossrank.server.config import Config, ConfigError, load_config

log = logging.getLogger("crossrank.server")


@dataclass
class Scaling:
    """Fixed ``replicas``, or autoscaling between ``min_replicas`` and ``max_replicas`` when the latter is set.

    ``target_ongoing`` is the number of in-flight requests per replica Ray Serve aims at: about what
    one replica's batcher coalesces well, so a replica is added when requests start to queue.
    """

    replicas: int = 1
    min_replicas: int = 1
    max_replicas: int | None = None
    target_ongoing: int = 8
    max_ongoing: int = 64
    cpus_per_replica: float = 1.0

    def __post_init__(self) -> None:
        """Checked here, before a cluster is started: Ray Serve would refuse these only after it is."""
        for key in ("replicas", "min_replicas", "target_ongoing", "max_ongoing"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ray scaling: {key} must be an integer >= 1, got {value!r}")
        if self.max_replicas is not None and (isinstance(self.max_replicas, bool)
                                              or not isinstance(self.max_replicas, int)
                                              or self.max_replicas < self.min_replicas):
            raise ConfigError(f"ray scaling: max_replicas must be an integer >= min_replicas ({self.min_replicas}), "
                              f"got {self.max_replicas!r}")
        if not (isinstance(self.cpus_per_replica, (int, float)) and 0 < self.cpus_per_replica < float("inf")):
            raise ConfigError(f"ray scaling: cpus_per_replica must be > 0, got {self.cpus_per_replica!r}")


def build(config: Config, scaling: Scaling | None = None) -> Any:
    """A bound Ray Serve application serving ``config``; ``serve.run`` it or name it to ``serve run``."""
    try:
        from ray import serve
    except ImportError as exc:
        raise MissingDependencyError("serving on Ray", "ray", "ray[serve]") from exc
    s = scaling or Scaling()
    # A replica holds cpus_per_replica cores: its engines get as many threads, not one per core of the node
    # (two replicas on a 16-core node would otherwise run 32 threads on the 16).
    # (CROSSRANK_THREADS, when set, is the operator's own choice and wins, as everywhere.)
    if not os.environ.get("CROSSRANK_THREADS"):
        threads = max(1, int(s.cpus_per_replica))
        config = replace(config, models={name: m if m.threads else replace(m, threads=threads)
                                         for name, m in config.models.items()})
    options: dict[str, Any] = {"max_ongoing_requests": s.max_ongoing,
                               "ray_actor_options": {"num_cpus": s.cpus_per_replica}}
    if s.max_replicas:
        options["autoscaling_config"] = {"min_replicas": s.min_replicas, "max_replicas": s.max_replicas,
                                         "target_ongoing_requests": s.target_ongoing}
    else:
        options["num_replicas"] = s.replicas

    @serve.deployment(name="crossrank", **options)
    @serve.ingress()
    class Crossrank:
        """One replica: the full crossrank app, built in the replica so nothing unpicklable travels."""

        def __init__(self, config: Config) -> None:
            self.config = config

        def __serve_build_asgi_app__(self) -> Any:
            from crossrank.server.app import create_app

            return create_app(self.config)

    return Crossrank.bind(config)  # type: ignore[attr-defined]  # added by @serve.deployment


def check_capacity(scaling: Scaling, node_cpus: list[float]) -> None:
    """Refuse replicas the cluster's nodes cannot place (Ray Serve would wait for them forever), counting
    what fits on each node. A cluster reporting no CPUs at all (a KubeRay head with ``num-cpus: 0`` whose
    autoscaler adds workers) is not judged: its nodes do not exist yet."""
    if not any(node_cpus):
        return
    needed = scaling.min_replicas if scaling.max_replicas else scaling.replicas
    fits = sum(int(cpus // scaling.cpus_per_replica) for cpus in node_cpus)
    if fits < needed:
        raise ConfigError(f"ray scaling: {needed} replicas of {scaling.cpus_per_replica:g} CPUs; the cluster's "
                          f"nodes ({', '.join(f'{c:g}' for c in node_cpus)} CPUs) hold {fits}")


def serve_forever(config: Config, scaling: Scaling | None = None, *, address: str | None = None) -> None:
    """Start (or join, with ``address``) a Ray cluster, deploy on ``server.host:port``, block until a signal.

    On SIGINT/SIGTERM only this app is deleted (its replicas finish their in-flight requests); Serve
    itself is shut down only when this process started the cluster, so other apps on a shared cluster
    keep running.
    """
    import ray
    from ray import serve

    s = scaling or Scaling()
    own_cluster = not ray.is_initialized() and address is None
    if not ray.is_initialized():
        ray_address(address)
        # "local": a cluster of our own, even where RAY_ADDRESS or a running `ray start` would make Ray join
        # one; shutting Serve down at exit must never stop other people's apps.
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False)
    check_capacity(s, [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")])
    stop = threading.Event()
    phase = {"deploying": True}

    def on_signal(*_: Any) -> None:
        stop.set()
        if phase["deploying"]:  # still waiting for replicas: interrupt the wait, the finally below cleans up
            phase["deploying"] = False  # once: a second signal must not interrupt the cleanup
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):  # before deploying: an interrupted deploy is cleaned up too
        signal.signal(sig, on_signal)
    serve.start(http_options={"host": config.server.host, "port": config.server.port})
    host, port = _serving_address(config)
    try:
        serve.run(build(config, s), name="crossrank", route_prefix="/")  # returns once the replicas run
        phase["deploying"] = False
        print(f"crossrank on Ray Serve: http://{host}:{port} (pid {os.getpid()})", flush=True)
        stop.wait()
    except KeyboardInterrupt:  # a signal while the replicas were still starting
        pass
    finally:
        phase["deploying"] = False
        try:
            serve.delete("crossrank")  # waits for the replicas' in-flight requests
        except Exception as exc:  # noqa: BLE001 - e.g. Ray's 60 s timeout: still shut down what is ours
            log.warning("deleting the crossrank app: %s", exc)
        if own_cluster:
            serve.shutdown()


def _serving_address(config: Config) -> tuple[str, int]:
    """Where Serve listens: a Serve already running on the cluster keeps its own host and port."""
    try:
        from ray.serve.context import _get_global_client

        http = _get_global_client().http_config  # type: ignore[union-attr]  # the except covers None
        host, port = str(http.host), int(http.port)
    except Exception:  # noqa: BLE001 - a private API: fall back to what was asked for
        return config.server.host, config.server.port
    if (host, port) != (config.server.host, config.server.port):
        log.warning("Ray Serve already listens on %s:%d on this cluster; --host/--port %s:%d are not applied",
                    host, port, config.server.host, config.server.port)
    return host, port


def __getattr__(name: str) -> Any:
    """``app`` for ``serve run crossrank.server.ray_serve:app``, built only when asked for."""
    if name == "app":
        return build(load_config(os.environ.get("CROSSRANK_CONFIG") or None))
    raise AttributeError(name)
