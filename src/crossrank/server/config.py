"""Server configuration: typed dataclasses are the single source of truth; YAML and CLI flags map onto them.

``${VAR}`` and ``${VAR:-default}`` expand from the environment *after* parsing: before parsing,
each reference becomes an inert placeholder (so ``[${KEY}]`` is valid YAML and an environment
value can never inject YAML structure), and placeholders in string values are then replaced by
the variables' values. An unset variable
without a default expands to the empty string, so ``api_keys: [${CROSSRANK_API_KEY}]`` means
"no auth" when the variable is unset: empty keys are dropped, never accepted.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from crossrank.errors import CrossrankError

ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
DEFAULT_MODEL_NAME = "default"


class ConfigError(CrossrankError):
    """The server configuration is invalid; the message names the key."""


@dataclass
class ModelConfig:
    """One served model: where it comes from and how the engine runs it."""

    model: str | None = None  # hub id, local path, export or built-in name; None is the built-in default
    backend: str = "auto"
    quantize: str | None = None
    max_length: int | None = None
    threads: int | None = None
    max_batch_tokens: int | None = None
    max_chunks_per_doc: int = 1
    # requests for this model in flight at once (429 past it); unset: only the server's own limit. A cap
    # per model keeps one slow or stalled model from taking every slot the others need.
    max_concurrent_requests: int | None = None
    # More names requests may use for this model (a client that always sends "rerank-english-v3.0" or
    # "jina-reranker-v1-base-en"): one engine, one batcher, one set of metrics under the model's own name.
    aliases: list[str] = field(default_factory=list)


@dataclass
class ServerConfig:
    """Limits and behaviour of the HTTP server (all per process)."""

    host: str = "127.0.0.1"
    port: int = 8080
    api_keys: list[str] = field(default_factory=list)
    max_documents: int = 1000
    max_body_bytes: int = 8 * 1024 * 1024
    max_text_chars: int = 100_000
    max_concurrent_requests: int = 64
    max_chunks_per_doc: int = 8  # the most windows a client may ask for per document
    request_timeout_s: float = 30.0
    body_timeout_s: float = 30.0  # longest pause while a body arrives (408), so a stalled upload frees its buffer
    batch_wait_ms: float = 2.0  # how long the batcher waits for more requests to coalesce
    max_batch_pairs: int = 256  # pairs per coalesced engine call (one big request may exceed it alone)
    cache_size: int = 0  # LRU entries of (model, activation, chunks, query, text) -> score; 0 disables
    preload: bool = True  # load every model at startup (/ready waits for them) or on first use
    default_model: str | None = None  # the model for requests that name none; the first one if unset
    # Origins a browser page may call this server from (CORS); empty: none, as with no CORS support.
    # ["*"] allows any origin, as TEI does by default.
    cors_allow_origins: list[str] = field(default_factory=list)


@dataclass
class Config:
    models: dict[str, ModelConfig] = field(default_factory=lambda: {DEFAULT_MODEL_NAME: ModelConfig()})
    server: ServerConfig = field(default_factory=ServerConfig)

    @property
    def default_model(self) -> str:
        return self.server.default_model or next(iter(self.models))

    def names(self) -> dict[str, str]:
        """Every name a request may use (model names and their aliases) -> the model's own name."""
        return {**{a: name for name, m in self.models.items() for a in m.aliases}, **{n: n for n in self.models}}

    def validate(self, *, models: bool = True) -> Config:
        """Every setting in range; ``models=False`` leaves the models unchecked (``serve --model`` replaces them)."""
        if models and not self.models:
            raise ConfigError("models: at least one model is needed")
        if models:
            self._check_aliases()
        if models and self.server.default_model and self.server.default_model not in self.names():
            raise ConfigError(f"server.default_model {self.server.default_model!r} is not in models")
        for key in ("max_documents", "max_body_bytes", "max_text_chars", "max_concurrent_requests",
                    "max_chunks_per_doc", "max_batch_pairs"):
            if getattr(self.server, key) < 1:
                raise ConfigError(f"server.{key} must be >= 1")
        if not (0 < self.server.request_timeout_s < math.inf) or not (0 < self.server.body_timeout_s < math.inf) \
                or not (0 <= self.server.batch_wait_ms < math.inf) or self.server.cache_size < 0:
            raise ConfigError("server.request_timeout_s and body_timeout_s must be finite and > 0, batch_wait_ms "
                              "finite and >= 0, cache_size >= 0")
        if not self.server.host.strip():
            raise ConfigError("server.host is empty (an unset variable?): say which address to listen on")
        if not 0 <= self.server.port <= 65535:
            raise ConfigError(f"server.port must be between 0 and 65535, got {self.server.port}")
        for name, m in self.models.items() if models else ():
            if m.model is not None and not str(m.model).strip():
                raise ConfigError(f"models.{name}.model is empty (an unset variable?): name a hub id, path or built-in")
            if m.backend not in ("auto", "onnx", "torch"):
                raise ConfigError(f"models.{name}.backend must be auto, onnx or torch, got {m.backend!r}")
            if m.quantize not in (None, "int8"):
                raise ConfigError(f"models.{name}.quantize must be int8 or absent, got {m.quantize!r}")
            for key in ("max_length", "threads", "max_batch_tokens", "max_chunks_per_doc", "max_concurrent_requests"):
                value = getattr(m, key)
                if value is not None and value < 1:
                    raise ConfigError(f"models.{name}.{key} must be >= 1, got {value}")
        # A key read from a file or variable often ends in a newline no HTTP header can carry.
        self.server.api_keys = [str(k).strip() for k in self.server.api_keys if str(k).strip()]
        self.server.cors_allow_origins = [o.strip() for o in self.server.cors_allow_origins if o.strip()]
        return self

    def _check_aliases(self) -> None:
        seen: dict[str, str] = {name: f"the model {name!r}" for name in self.models}
        for name, m in self.models.items():
            m.aliases = [a.strip() for a in m.aliases]
            for alias in m.aliases:
                if not alias:
                    raise ConfigError(f"models.{name}.aliases holds an empty name (an unset variable?)")
                if alias in seen:
                    raise ConfigError(f"models.{name}.aliases: {alias!r} already names {seen[alias]}")
                seen[alias] = f"an alias of {name!r}"


def expand_env(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """Expand ``${VAR}`` / ``${VAR:-default}`` in every string inside ``value``."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):  # as the shell's ${VAR:-default}: the default also replaces an empty value
        return ENV_VAR.sub(lambda m: env.get(m.group(1)) or m.group(2) or "", value)
    if isinstance(value, list):
        return [expand_env(v, env) for v in value]
    if isinstance(value, dict):
        return {expand_env(k, env): expand_env(v, env) for k, v in value.items()}
    return value


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}
#: Fields whose default is None, and the type a value must have.
_OPTIONAL_INTS = {"max_length", "threads", "max_batch_tokens"}


def _number(value: Any, kind: type, where: str) -> int | float:
    """``value`` as ``kind``: numbers and numeric strings (from ${VAR}); never a bool, a cut float or NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{where} must be a number, got {value!r}") from None
    if kind is int:
        if not number.is_integer():
            raise ConfigError(f"{where} must be a whole number, got {value!r}")
        return int(number)
    if math.isnan(number):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    return number


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    out = cls()
    for key, value in data.items():
        default = getattr(out, key)
        if isinstance(default, bool):
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:  # from ${VAR}
                value = value.strip().lower() in _TRUE
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{key} must be true or false, got {value!r}")
        elif isinstance(default, (int, float)):
            value = _number(value, type(default), f"{where}.{key}")
        elif key in _OPTIONAL_INTS:
            value = None if value is None or value == "" else _number(value, int, f"{where}.{key}")
        elif isinstance(default, list):
            if not isinstance(value, list):
                raise ConfigError(f"{where}.{key} must be a list")
            value = [str(v) for v in value if v is not None]
        elif value is not None and key in ("model", "quantize", "default_model", "backend", "host"):
            value = str(value)
        setattr(out, key, value)
    return out


def config_from_dict(data: dict[str, Any] | None, environ: dict[str, str] | None = None, *,
                     models: bool = True) -> Config:
    data = expand_env(data or {}, environ)
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a mapping with 'models' and 'server'")
    unknown = sorted(set(data) - {"models", "server"})
    if unknown:
        raise ConfigError(f"unknown top-level keys {unknown}; expected models, server")
    models_data = data.get("models")
    config = Config(server=_build(ServerConfig, data.get("server"), "server"))
    if models_data is not None:
        if not isinstance(models_data, dict):
            raise ConfigError("models must map names to model settings")
        config.models = {}
        for name, spec in models_data.items():
            if isinstance(spec, str):  # shorthand: `name: hub-id`
                spec = {"model": spec}
            if str(name) in config.models:
                raise ConfigError(f"models: the name {str(name)!r} is given twice")
            config.models[str(name)] = _build(ModelConfig, spec, f"models.{name}")
    return config.validate(models=models)


def _protect(text: str) -> tuple[str, dict[str, str]]:
    """Replace each ``${...}`` by a placeholder that YAML reads as a plain scalar anywhere."""
    refs: dict[str, str] = {}

    def hide(m: re.Match[str]) -> str:
        token = f"__crossrank_env_{len(refs)}__"
        refs[token] = m.group(0)
        return token

    return ENV_VAR.sub(hide, text), refs


def _unprotect(value: Any, refs: dict[str, str]) -> Any:
    if isinstance(value, str):
        return re.sub(r"__crossrank_env_\d+__", lambda m: refs.get(m.group(0), m.group(0)), value)
    if isinstance(value, list):
        return [_unprotect(v, refs) for v in value]
    if isinstance(value, dict):
        return {_unprotect(k, refs): _unprotect(v, refs) for k, v in value.items()}
    return value


def _unique_keys_loader() -> type:
    """PyYAML's safe loader, except that a key given twice in one mapping is an error, not "last wins"."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict:
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} is given twice", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return Loader


def load_config(path: str | os.PathLike[str] | None, *, models: bool = True) -> Config:
    """The configuration in ``path`` (YAML), or the defaults (the built-in model) when ``path`` is None.
    ``models=False``: only its ``server:`` settings will be used (``serve --model``), so its models are not
    checked and the file may be empty."""
    if path is None:
        return Config().validate()
    import yaml

    try:
        text, refs = _protect(Path(path).read_text(encoding="utf-8"))
        data = _unprotect(yaml.load(text, Loader=_unique_keys_loader()), refs)  # noqa: S506 - a SafeLoader
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if data is None and models:  # an empty file: serving the built-in model instead would hide the mistake
        raise ConfigError(f"{path} is empty: it needs at least 'models:' (or run crossrank serve without --config)")
    return config_from_dict(data, models=models)
