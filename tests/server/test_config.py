"""Configuration: YAML with ${ENV} placeholders, defaults, and errors that name the key."""

from __future__ import annotations

import pytest

from crossrank.server.config import Config, ConfigError, config_from_dict, expand_env, load_config


def test_yaml_with_env_placeholders(tmp_path, monkeypatch):
    monkeypatch.setenv("CR_TEST_KEY", "k1")
    monkeypatch.setenv("CR_TEST_PORT", "9001")
    monkeypatch.delenv("CR_TEST_UNSET", raising=False)
    path = tmp_path / "crossrank.yaml"
    path.write_text(
        "models:\n"
        "  msmarco:\n"
        "    model: ${CR_TEST_MODEL:-cross-encoder/ms-marco-MiniLM-L6-v2}\n"
        "    backend: onnx\n"
        "    max_length: 512\n"
        "  short: some/model\n"
        "server:\n"
        "  port: ${CR_TEST_PORT}\n"
        "  max_documents: 1000\n"
        "  api_keys: [${CR_TEST_KEY}, ${CR_TEST_UNSET}]\n"
    )
    config = load_config(path)
    assert config.models["msmarco"].model == "cross-encoder/ms-marco-MiniLM-L6-v2"
    assert config.models["msmarco"].max_length == 512 and config.models["short"].model == "some/model"
    assert config.server.port == 9001 and config.server.api_keys == ["k1"]
    assert config.server.host == "127.0.0.1" and config.default_model == "msmarco"


def test_env_values_cannot_inject_yaml(tmp_path, monkeypatch):
    monkeypatch.setenv("CR_TEST_KEY", "a]\n  evil: [b")
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  api_keys: [${CR_TEST_KEY}]\n")
    assert load_config(path).server.api_keys == ["a]\n  evil: [b"]


def test_defaults_serve_the_builtin_model():
    config = load_config(None)
    assert list(config.models) == ["default"] and config.models["default"].model is None
    assert config.server.host == "127.0.0.1"
    assert expand_env({"a": ["${X:-y}", 3]}, environ={}) == {"a": ["y", 3]}


@pytest.mark.parametrize(("data", "message"), [
    ({"modles": {}}, "unknown top-level keys"),
    ({"models": {}}, "at least one model"),
    ({"models": {"m": {"model": "x", "backend": "tensorrt"}}}, "backend"),
    ({"models": {"m": {"model": "x", "quantize": "int4"}}}, "quantize"),
    ({"models": {"m": {"model": "x", "maxlen": 3}}}, "unknown keys"),
    ({"server": {"max_documents": "many"}}, "max_documents must be a number"),
    ({"server": {"max_documents": 0}}, "max_documents must be >= 1"),
    ({"server": {"preload": "sometimes"}}, "preload must be true or false"),
    ({"server": {"port": 70000}}, "port must be between"),
    ({"server": {"port": 8080.9}}, "port must be a whole number"),
    ({"server": {"max_documents": True}}, "max_documents must be a number"),
    ({"server": {"request_timeout_s": float("nan")}}, "request_timeout_s must be"),
    ({"server": {"request_timeout_s": float("inf")}}, "request_timeout_s and body_timeout_s must be finite"),
    ({"server": {"body_timeout_s": 0}}, "body_timeout_s must be finite and > 0"),
    ({"server": {"host": ""}}, "server.host is empty"),
    ({"models": {"m": {"model": "x", "max_length": "lots"}}}, "max_length must be a number"),
    ({"models": {"m": {"model": "x", "threads": -4}}}, "threads must be >= 1"),
    ({"models": {"m": {"model": "x", "max_chunks_per_doc": 0}}}, "max_chunks_per_doc must be >= 1"),
    ({"models": {1: "x", "1": "y"}}, "given twice"),
    ({"server": {"default_model": "nope"}}, "default_model"),
    ({"server": {"api_keys": "k"}}, "api_keys must be a list"),
])
def test_bad_config_names_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    assert isinstance(Config().validate(), Config)
    bad.write_bytes(b"models:\n  x: caf\xff\n")  # was a UnicodeDecodeError traceback
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)
    bad.write_text("")  # served the built-in random-head model without a word
    with pytest.raises(ConfigError, match="is empty"):
        load_config(bad)
    bad.write_text("models:\n  x:\n    model: ${CROSSRANK_TEST_UNSET_VAR}\n")
    with pytest.raises(ConfigError, match="models.x.model is empty"):
        load_config(bad)
    # serve --model replaces the models: a shared file read for its server: settings alone is fine
    bad.write_text("server:\n  port: 9000\nmodels:\n  x:\n    model: ${CROSSRANK_TEST_UNSET_VAR}\n")
    assert load_config(bad, models=False).server.port == 9000
    bad.write_text("# nothing yet\n")
    assert load_config(bad, models=False).server.port == Config().server.port


def test_environment_values_follow_the_shell_and_fill_keys_and_booleans(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text("models:\n  ${NAME:-main}: {model: x, threads: ${THREADS:-2}}\n"
                    "server:\n  host: ${BIND:-127.0.0.1}\n  preload: ${PRELOAD:-false}\n  port: ${PORT:-9000}\n")
    for name, value in {"BIND": "", "PRELOAD": "yes", "PORT": "9100"}.items():  # BIND set but empty
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("NAME", raising=False)
    monkeypatch.delenv("THREADS", raising=False)
    config = load_config(path)
    assert list(config.models) == ["main"] and config.models["main"].threads == 2
    assert config.server.host == "127.0.0.1" and config.server.preload is True and config.server.port == 9100


def test_a_key_given_twice_in_yaml_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("models:\n  a: /m1\n  a: /m2\n")
    with pytest.raises(ConfigError, match="given twice"):
        load_config(path)


def test_aliases_are_names_of_one_model():
    config = config_from_dict({"models": {"msmarco": {"model": "m", "aliases": ["rerank-english-v3.0", " jina "]},
                                          "other": "o"},
                               "server": {"default_model": "jina"}})
    assert config.names() == {"rerank-english-v3.0": "msmarco", "jina": "msmarco", "msmarco": "msmarco",
                              "other": "other"}
    assert config.default_model == "jina"
    for models, message in [({"a": {"model": "m", "aliases": ["b"]}, "b": "m"}, "already names the model 'b'"),
                            ({"a": {"model": "m", "aliases": ["x"]}, "b": {"model": "m", "aliases": ["x"]}},
                             "already names an alias of 'a'"),
                            ({"a": {"model": "m", "aliases": ["a"]}}, "already names the model 'a'"),
                            ({"a": {"model": "m", "aliases": ["${CR_TEST_UNSET_ALIAS}"]}}, "empty name"),
                            ({"a": {"model": "m", "aliases": "b"}}, "must be a list")]:
        with pytest.raises(ConfigError, match=message):
            config_from_dict({"models": models}, environ={})


def test_cors_origins():
    assert config_from_dict({}).server.cors_allow_origins == []
    config = config_from_dict({"server": {"cors_allow_origins": ["https://app.example", " ", "${UNSET}"]}},
                              environ={})
    assert config.server.cors_allow_origins == ["https://app.example"]
