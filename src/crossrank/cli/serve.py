"""``crossrank serve``: the HTTP server (imports FastAPI/uvicorn only when the command runs)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from crossrank.errors import CrossrankError

if TYPE_CHECKING:
    from crossrank.server.config import Config


#: uvicorn's log levels (it names trace, below debug, for Python's logging too)
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
TRACE = 5


def serve(
    config: Annotated[Path | None, typer.Option(help="crossrank.yaml; without it the built-in default model")] = None,
    model: Annotated[str | None, typer.Option(
        help="serve this one model (hub id, local dir, export) instead of the configured ones")] = None,
    name: Annotated[str | None, typer.Option(
        help="the name clients send for --model (default: the hub id, or a directory's name)")] = None,
    quantize: Annotated[str | None, typer.Option(help="with --model: int8 (about 1.5x faster on CPU)")] = None,
    host: Annotated[str | None, typer.Option(help="address to bind (default 127.0.0.1, or server.host)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8080, or server.port)")] = None,
    log_level: Annotated[str, typer.Option(
        help="uvicorn and crossrank log level: critical, error, warning, info, debug or trace")] = "info",
    ray: Annotated[bool, typer.Option("--ray", help="deploy on Ray Serve (replicas, autoscaling)")] = False,
    replicas: Annotated[int | None, typer.Option(help="Ray Serve replicas (fixed; default 2)")] = None,
    max_replicas: Annotated[int | None, typer.Option(help="autoscale from --replicas up to this many")] = None,
    cpus_per_replica: Annotated[float | None, typer.Option(
        help="CPUs each Ray Serve replica reserves, and its engines' threads (default 1)")] = None,
    ray_address: Annotated[str | None, typer.Option(help="join this Ray cluster (default: start a local one)")
                           ] = None,
) -> None:
    """Serve the configured models over the Cohere, Jina, TEI, Metarank and plain rerank APIs."""
    import logging

    try:
        import uvicorn

        from crossrank.server.app import create_app
        from crossrank.server.config import ConfigError, load_config
    except ImportError as exc:
        typer.echo(f"error: the server needs its extra ({exc.name} is missing): pip install 'crossrank[server]'",
                   err=True)
        raise typer.Exit(2) from None
    try:
        cfg = load_config(config, models=model is None)
        if model is not None:
            cfg = one_model(cfg, model, name=name, quantize=quantize)
        elif name is not None or quantize is not None:
            raise ConfigError("--name and --quantize go with --model (or set them in the config)")
        if not ray and any(v is not None for v in (replicas, max_replicas, ray_address, cpus_per_replica)):
            raise ConfigError("--replicas, --max-replicas, --cpus-per-replica and --ray-address go with --ray")
        cfg.server.host = host or cfg.server.host
        cfg.server.port = port if port is not None else cfg.server.port
        cfg.validate()  # the flags too: --port 70000 would otherwise bind a wrapped-around port
        if log_level.lower() not in LOG_LEVELS:
            raise ConfigError(f"--log-level {log_level!r}: choose one of {', '.join(LOG_LEVELS)}")
    except CrossrankError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    log_level = log_level.lower()
    logging.addLevelName(TRACE, "TRACE")  # uvicorn's level below DEBUG, unknown to logging until named
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("crossrank").setLevel(logging.NOTSET)  # --log-level decides, not the CLI's default
    if not cfg.server.api_keys and cfg.server.host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger("crossrank.server").warning(
            "serving on %s without API keys: anyone who can reach this address can use the models",
            cfg.server.host)
    if ray:
        from crossrank.server.ray_serve import Scaling, serve_forever

        try:
            fixed = 2 if replicas is None else replicas
            scaling = Scaling(replicas=fixed, min_replicas=fixed, max_replicas=max_replicas)
            if cpus_per_replica is not None:
                scaling = replace(scaling, cpus_per_replica=cpus_per_replica)  # checked again on replace
            serve_forever(cfg, scaling, address=ray_address)
        except CrossrankError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        return
    # uvicorn handles SIGTERM/SIGINT: stop accepting, finish in-flight requests, then the app's
    # lifespan drains the batchers.
    uvicorn.run(create_app(cfg), host=cfg.server.host, port=cfg.server.port, log_level=log_level,
                timeout_graceful_shutdown=int(cfg.server.request_timeout_s) + 5)


def one_model(cfg: Config, model: str, *, name: str | None = None, quantize: str | None = None) -> Config:
    """``cfg`` serving only ``model`` (its server settings kept): ``serve --model`` without writing YAML.

    Clients name the model as they would on the hub; a local directory is named by its last component
    so that no path on disk appears in requests, logs or ``/info``.
    """
    from crossrank.server.config import ModelConfig

    served = name or (Path(model).name if Path(model).expanduser().exists() else model)
    cfg.models = {served: ModelConfig(model=model, quantize=quantize)}
    cfg.server.default_model = None
    return cfg.validate()


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the CLI."""
    app.command()(serve)
