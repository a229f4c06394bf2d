"""ConfigStore, Settings and datadir.atomic_write: real files in a temp data directory."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from agproxy.config import (
    DEFAULT_UPSTREAM_BASE_URLS,
    ConfigError,
    ConfigStore,
    OverriddenByEnv,
    Settings,
    parse_cli_value,
)
from agproxy.datadir import CONFIG_FILE, atomic_write

API_KEY_RULE = 'api_key must start with "sk-" and be at least 10 characters long'
KEY_RE = re.compile(r"^sk-[0-9a-f]{32}$")
VALID_KEY = "sk-0123456789abcdef"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_config(directory: Path, data: dict | str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CONFIG_FILE
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data_dir: Path) -> ConfigStore:
    s = ConfigStore(data_dir, environ={})
    s.load()
    return s


# -- first run and defaults --------------------------------------------------


def test_first_load_creates_dir_and_private_config_with_generated_key(data_dir: Path) -> None:
    assert not data_dir.exists()
    settings = ConfigStore(data_dir, environ={}).load()
    path = data_dir / CONFIG_FILE
    assert data_dir.is_dir()
    assert path.is_file()
    assert mode_of(path) == 0o600
    assert KEY_RE.match(settings.api_key), settings.api_key
    assert json.loads(path.read_text())["api_key"] == settings.api_key


def test_second_load_keeps_the_same_key(data_dir: Path) -> None:
    first = ConfigStore(data_dir, environ={}).load().api_key
    before = (data_dir / CONFIG_FILE).read_bytes()
    second = ConfigStore(data_dir, environ={}).load().api_key
    assert first == second
    assert (data_dir / CONFIG_FILE).read_bytes() == before


def test_generated_keys_differ_between_data_dirs(tmp_path: Path) -> None:
    a = ConfigStore(tmp_path / "a", environ={}).load().api_key
    b = ConfigStore(tmp_path / "b", environ={}).load().api_key
    assert a != b


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("port", 8045),
        ("allow_lan_access", False),
        ("auth_mode", "auto"),
        ("auto_start", True),
        ("admin_password", None),
        (
            "upstream_base_urls",
            (
                "https://daily-cloudcode-pa.sandbox.googleapis.com/v1internal",
                "https://daily-cloudcode-pa.googleapis.com/v1internal",
                "https://cloudcode-pa.googleapis.com/v1internal",
            ),
        ),
    ],
)
def test_defaults(store: ConfigStore, key: str, expected: object) -> None:
    assert getattr(store.settings, key) == expected


def test_default_upstream_bases_each_end_in_v1internal() -> None:
    assert len(DEFAULT_UPSTREAM_BASE_URLS) == 3
    assert all(
        u.startswith("https://") and u.endswith("/v1internal") for u in DEFAULT_UPSTREAM_BASE_URLS
    )


def test_first_run_file_holds_only_the_key(store: ConfigStore) -> None:
    # Defaults live in code, not in the file, so a newer release can change them.
    assert set(json.loads(store.path.read_text())) == {"api_key"}


# -- api_key validation ------------------------------------------------------


@pytest.mark.parametrize("bad", ["abc", "sk-short", "pk-0123456789abc", "sk-012345", ""])
def test_bad_api_key_is_refused_and_file_untouched(store: ConfigStore, bad: str) -> None:
    before = store.path.read_bytes()
    old_key = store.settings.api_key
    with pytest.raises(ConfigError) as info:
        store.update({"api_key": bad})
    assert info.value.key == "api_key"
    assert API_KEY_RULE in info.value.message
    assert store.path.read_bytes() == before
    assert store.settings.api_key == old_key


@pytest.mark.parametrize("bad", ["abc", "sk-short", "pk-0123456789abc"])
def test_bad_api_key_message_is_exactly_the_rule(store: ConfigStore, bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        store.update({"api_key": bad})
    assert info.value.message == API_KEY_RULE


@pytest.mark.parametrize("good", ["sk-0123456789", "sk-0123456", "sk-" + "a" * 60])
def test_valid_api_key_is_accepted_and_persisted(
    store: ConfigStore, data_dir: Path, good: str
) -> None:
    assert store.update({"api_key": good}).api_key == good
    assert json.loads(store.path.read_text())["api_key"] == good
    assert mode_of(store.path) == 0o600
    assert ConfigStore(data_dir, environ={}).load().api_key == good


def test_resetting_api_key_never_leaves_an_invalid_key(store: ConfigStore) -> None:
    try:
        settings = store.update({"api_key": None})
    except ConfigError:
        return  # refusing the reset would also be correct
    assert KEY_RE.match(settings.api_key) or settings.api_key.startswith("sk-")


# -- other validation ----------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("port", 0),
        ("port", 70000),
        ("port", -1),
        ("port", "abc"),
        ("auth_mode", "sometimes"),
        ("upstream_base_urls", "https://x/v1"),
        ("upstream_base_urls", ["https://x/v1internal", "ftp://y/v1internal"]),
        ("upstream_base_urls", ""),
        ("allow_lan_access", "maybe"),
        ("oauth_token_url", "not-a-url"),
        ("zai_dispatch_mode", "sometimes"),
        ("monitor_max_rows", 0),
        ("monitor_body_max_bytes", -5),
        ("monitor_retention_days", 0),
        ("monitor_capture_bodies", "perhaps"),
        ("quota_protection_percent", 100),
        ("quota_protection_percent", -1),
    ],
)
def test_invalid_values_are_refused_naming_the_key(
    store: ConfigStore, key: str, bad: object
) -> None:
    before = store.path.read_bytes()
    old = getattr(store.settings, key)
    with pytest.raises(ConfigError) as info:
        store.update({key: bad})
    assert info.value.key == key
    assert not isinstance(info.value, OverriddenByEnv)
    assert store.path.read_bytes() == before
    assert getattr(store.settings, key) == old


def test_unknown_key_is_refused(store: ConfigStore) -> None:
    before = store.path.read_bytes()
    with pytest.raises(ConfigError) as info:
        store.update({"no_such_key": 1})
    assert info.value.key == "no_such_key"
    assert "unknown config key" in info.value.message
    assert store.path.read_bytes() == before


def test_one_bad_key_rejects_the_whole_update(store: ConfigStore) -> None:
    before = store.path.read_bytes()
    with pytest.raises(ConfigError) as info:
        store.update({"port": 9000, "auth_mode": "sometimes"})
    assert info.value.key == "auth_mode"
    assert store.path.read_bytes() == before
    assert store.settings.port == 8045


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("port", 9000),
        ("port", 1),
        ("port", 65535),
        ("allow_lan_access", True),
        ("auth_mode", "strict"),
        ("auth_mode", "all_except_health"),
        ("auth_mode", "off"),
        ("auto_start", False),
        ("admin_password", "hunter2-long-password"),
    ],
)
def test_valid_update_is_saved(store: ConfigStore, data_dir: Path, key: str, value: object) -> None:
    assert getattr(store.update({key: value}), key) == value
    assert json.loads(store.path.read_text())[key] == value
    assert getattr(ConfigStore(data_dir, environ={}).load(), key) == value


def test_upstream_urls_comma_separated_are_split(store: ConfigStore) -> None:
    settings = store.update(
        {"upstream_base_urls": "http://127.0.0.1:1/v1internal, http://127.0.0.1:2/v1internal"}
    )
    assert settings.upstream_base_urls == (
        "http://127.0.0.1:1/v1internal",
        "http://127.0.0.1:2/v1internal",
    )


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("socks5://127.0.0.1:1080", "socks5://127.0.0.1:1080"),
        ("SOCKS5H://proxy.example:1080", "socks5h://proxy.example:1080"),
        ("socks5h://alice:s%40cret@10.0.0.2:1080", "socks5h://alice:s%40cret@10.0.0.2:1080"),
        ("http://127.0.0.1:3128", "http://127.0.0.1:3128"),
        ("127.0.0.1:3128", "http://127.0.0.1:3128"),
    ],
)
def test_upstream_proxy_accepts_http_and_socks5(store: ConfigStore, given: str, kept: str) -> None:
    assert store.update({"upstream_proxy": given}).upstream_proxy == kept


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("socks4://127.0.0.1:1080", "only http://, https://, socks5:// and socks5h://"),
        ("ftp://127.0.0.1:21", "only http://, https://, socks5:// and socks5h://"),
        ("socks5://proxy.example", "write a SOCKS proxy as socks5://host:port"),
        ("socks5://alice@127.0.0.1:1080", "needs a user and a password"),
        ("socks5://älice:pw-secret@127.0.0.1:1080", "ASCII"),
        ("socks5h://alice:pw-secret@127.0.0.1:99999", "port"),
    ],
)
def test_other_proxy_schemes_are_refused_clearly(store: ConfigStore, bad: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        store.update({"upstream_proxy": bad})
    assert info.value.key == "upstream_proxy"
    assert says in info.value.message
    assert "pw-secret" not in info.value.message  # the refusal shows the URL masked


def test_none_returns_key_to_default(store: ConfigStore) -> None:
    store.update({"port": 9000})
    assert json.loads(store.path.read_text())["port"] == 9000
    settings = store.update({"port": None})
    assert "port" not in json.loads(store.path.read_text())
    assert settings.port == 8045
    assert store.settings.port == 8045


def test_unknown_keys_in_file_are_preserved(data_dir: Path) -> None:
    write_config(data_dir, {"api_key": VALID_KEY, "future_feature": {"x": [1, 2]}})
    store = ConfigStore(data_dir, environ={})
    store.load()
    store.update({"port": 9100})
    saved = json.loads(store.path.read_text())
    assert saved["future_feature"] == {"x": [1, 2]}
    assert saved["port"] == 9100
    assert saved["api_key"] == VALID_KEY


def test_update_keeps_what_another_process_saved(data_dir: Path) -> None:
    a = ConfigStore(data_dir, environ={})
    a.load()
    b = ConfigStore(data_dir, environ={})
    b.load()
    b.update({"auth_mode": "strict"})
    a.update({"port": 9200})  # `a` never reloaded: it must re-read the file under the lock
    saved = json.loads((data_dir / CONFIG_FILE).read_text())
    assert saved["auth_mode"] == "strict"
    assert saved["port"] == 9200


# -- broken files --------------------------------------------------------------


def test_corrupt_json_is_reported_with_path_and_line_and_never_overwritten(data_dir: Path) -> None:
    text = '{\n  "port": 8045,\n  "auth_mode": "off"\n  "x": 1\n}'
    path = write_config(data_dir, text)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as info:
        ConfigStore(data_dir, environ={}).load()
    assert str(path) in info.value.message
    assert "line 4" in info.value.message
    assert path.read_bytes() == before
    # A read-only load does not touch it either.
    with pytest.raises(ConfigError):
        ConfigStore(data_dir, environ={}).load(create=False)
    assert path.read_bytes() == before


def test_wrong_type_in_file_names_path_line_and_key(data_dir: Path) -> None:
    text = '{\n "api_key": "sk-0123456789abcdef",\n "port": "eighty"\n}'
    path = write_config(data_dir, text)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as info:
        ConfigStore(data_dir, environ={}).load()
    message = info.value.message
    assert str(path) in message
    assert "line 3" in message
    assert "port" in message
    assert info.value.key == "port"
    assert path.read_bytes() == before


def test_json_that_is_not_an_object_is_refused(data_dir: Path) -> None:
    path = write_config(data_dir, "[1, 2, 3]\n")
    with pytest.raises(ConfigError) as info:
        ConfigStore(data_dir, environ={}).load()
    assert str(path) in info.value.message
    assert path.read_text() == "[1, 2, 3]\n"


def test_invalid_api_key_in_file_is_reported_not_replaced(data_dir: Path) -> None:
    path = write_config(data_dir, {"api_key": "abc"})
    before = path.read_bytes()
    with pytest.raises(ConfigError) as info:
        ConfigStore(data_dir, environ={}).load()
    assert info.value.key == "api_key"
    assert API_KEY_RULE in info.value.message
    assert path.read_bytes() == before


def test_empty_file_gets_a_key(data_dir: Path) -> None:
    write_config(data_dir, "")
    settings = ConfigStore(data_dir, environ={}).load()
    assert KEY_RE.match(settings.api_key)


# -- environment ----------------------------------------------------------------

ENV = {
    "AGPROXY_PORT": "9001",
    "AGPROXY_ALLOW_LAN_ACCESS": "true",
    "AGPROXY_AUTH_MODE": "strict",
    "AGPROXY_UPSTREAM_BASE_URLS": "http://127.0.0.1:1/v1internal,http://127.0.0.1:2/v1internal",
}


def test_env_wins_over_file_and_is_not_written(data_dir: Path) -> None:
    path = write_config(
        data_dir,
        {"api_key": VALID_KEY, "port": 8100, "auth_mode": "off", "allow_lan_access": False},
    )
    store = ConfigStore(data_dir, environ=ENV)
    settings = store.load()
    assert settings.port == 9001
    assert settings.allow_lan_access is True
    assert settings.auth_mode == "strict"
    assert settings.upstream_base_urls == (
        "http://127.0.0.1:1/v1internal",
        "http://127.0.0.1:2/v1internal",
    )
    assert store.env_keys == sorted(["port", "allow_lan_access", "auth_mode", "upstream_base_urls"])
    # Saving something else does not leak env values into the file.
    store.update({"auto_start": False})
    saved = json.loads(path.read_text())
    assert saved == {
        "api_key": VALID_KEY,
        "port": 8100,
        "auth_mode": "off",
        "allow_lan_access": False,
        "auto_start": False,
    }
    assert store.settings.port == 9001
    assert store.file_values["port"] == 8100


def test_env_values_not_written_on_first_run(data_dir: Path) -> None:
    ConfigStore(data_dir, environ=ENV).load()
    assert set(json.loads((data_dir / CONFIG_FILE).read_text())) == {"api_key"}


def test_env_api_key_is_not_written_to_file(data_dir: Path) -> None:
    settings = ConfigStore(data_dir, environ={"AGPROXY_API_KEY": VALID_KEY}).load()
    assert settings.api_key == VALID_KEY
    assert VALID_KEY not in (data_dir / CONFIG_FILE).read_text()


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"port": 1234}, "AGPROXY_PORT"),
        ({"auth_mode": "off"}, "AGPROXY_AUTH_MODE"),
        ({"allow_lan_access": False}, "AGPROXY_ALLOW_LAN_ACCESS"),
    ],
)
def test_update_of_env_overridden_key_is_refused(
    data_dir: Path, change: dict, variable: str
) -> None:
    store = ConfigStore(data_dir, environ=ENV)
    store.load()
    before = store.path.read_bytes()
    with pytest.raises(OverriddenByEnv) as info:
        store.update(change)
    assert isinstance(info.value, ConfigError)
    assert info.value.key == next(iter(change))
    assert variable in info.value.message
    assert store.path.read_bytes() == before


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"AGPROXY_PORT": "x"}, "AGPROXY_PORT"),
        ({"AGPROXY_PORT": "70000"}, "AGPROXY_PORT"),
        ({"AGPROXY_ALLOW_LAN_ACCESS": "maybe"}, "AGPROXY_ALLOW_LAN_ACCESS"),
        ({"AGPROXY_AUTH_MODE": "sometimes"}, "AGPROXY_AUTH_MODE"),
        ({"AGPROXY_API_KEY": "abc"}, "AGPROXY_API_KEY"),
        ({"AGPROXY_UPSTREAM_BASE_URLS": "http://x/v1"}, "AGPROXY_UPSTREAM_BASE_URLS"),
    ],
)
def test_invalid_env_value_names_the_variable(data_dir: Path, environ: dict, variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        ConfigStore(data_dir, environ=environ).load()
    assert variable in info.value.message
    assert info.value.key == variable.removeprefix("AGPROXY_").lower()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("1", True),
        ("yes", True),
        ("ON", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("Off", False),
    ],
)
def test_env_booleans(data_dir: Path, raw: str, expected: bool) -> None:
    settings = ConfigStore(data_dir, environ={"AGPROXY_ALLOW_LAN_ACCESS": raw}).load()
    assert settings.allow_lan_access is expected


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_blank_env_values_are_ignored(data_dir: Path, blank: str) -> None:
    write_config(data_dir, {"api_key": VALID_KEY, "port": 8200})
    environ = {"AGPROXY_PORT": blank, "AGPROXY_API_KEY": blank, "AGPROXY_AUTH_MODE": blank}
    store = ConfigStore(data_dir, environ=environ)
    settings = store.load()
    assert settings.port == 8200
    assert settings.api_key == VALID_KEY
    assert settings.auth_mode == "auto"
    assert store.env_keys == []
    assert store.update({"port": 8300}).port == 8300  # not treated as overridden


# -- masking ------------------------------------------------------------------------


def test_public_view_masks_every_secret(data_dir: Path) -> None:
    api_key = "sk-topsecretapikey0001"
    password = "admin-password-0002"
    zai = "zai-secret-key-0003"
    write_config(data_dir, {"api_key": api_key, "admin_password": password})
    store = ConfigStore(data_dir, environ={"AGPROXY_ZAI_API_KEY": zai})
    store.load()
    view = store.public_view()
    dump = json.dumps(view, ensure_ascii=False)
    for secret in (api_key, password, zai):
        assert secret not in dump
    for key in ("api_key", "admin_password", "zai_api_key"):
        assert view[key]  # masked, not dropped
    assert view["port"] == 8045
    assert store.settings.api_key == api_key  # masking does not touch the settings


def test_public_view_keeps_unset_secret_unset(store: ConfigStore) -> None:
    assert store.public_view()["admin_password"] is None
    assert store.public_view()["zai_api_key"] is None


# -- reloading ------------------------------------------------------------------------


def test_reload_if_changed_picks_up_other_process_edits(data_dir: Path) -> None:
    server = ConfigStore(data_dir, environ={})
    server.load()
    assert server.reload_if_changed() is False
    assert server.reload_if_changed() is False
    cli = ConfigStore(data_dir, environ={})
    cli.load()
    assert server.reload_if_changed() is False  # a read-only load changes nothing
    cli.update({"port": 12345})
    assert server.reload_if_changed() is True
    assert server.settings.port == 12345
    assert server.reload_if_changed() is False


def test_reload_reports_a_broken_file_and_keeps_old_settings(data_dir: Path) -> None:
    server = ConfigStore(data_dir, environ={})
    old = server.load()
    (data_dir / CONFIG_FILE).write_text('{"api_key": ')
    with pytest.raises(ConfigError):
        server.reload_if_changed()
    assert server.settings == old


# -- derived values ---------------------------------------------------------------------


@pytest.mark.parametrize(("lan", "host"), [(False, "127.0.0.1"), (True, "0.0.0.0")])
def test_host(lan: bool, host: str) -> None:
    assert Settings(api_key=VALID_KEY, allow_lan_access=lan).host == host


@pytest.mark.parametrize(
    ("password", "secret"),
    [
        (None, VALID_KEY),
        ("", VALID_KEY),
        ("my-password-long", "my-password-long"),
    ],
)
def test_admin_secret_falls_back_to_api_key(password: str | None, secret: str) -> None:
    assert Settings(api_key=VALID_KEY, admin_password=password).admin_secret == secret


@pytest.mark.parametrize(
    ("mode", "key", "can"),
    [
        ("off", "zai-key", False),
        ("off", None, False),
        ("exclusive", None, False),
        ("exclusive", "", False),
        ("exclusive", "zai-key", True),
        ("pooled", "zai-key", True),
        ("fallback", "zai-key", True),
    ],
)
def test_zai_can_serve(mode: str, key: str | None, can: bool) -> None:
    s = Settings(api_key=VALID_KEY, zai_dispatch_mode=mode, zai_api_key=key)
    assert s.zai_can_serve is can


# -- CLI value parsing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("port", "9000", 9000),
        ("allow_lan_access", "true", True),
        ("allow_lan_access", "false", False),
        ("auto_start", "no", False),
        ("api_key", "sk-abcdef0123456789", "sk-abcdef0123456789"),
        ("auth_mode", "strict", "strict"),
        ("shutdown_timeout", "2.5", 2.5),
        ("port", "default", None),
        ("port", "null", None),
        ("admin_password", "None", None),
        (
            "upstream_base_urls",
            "http://a/v1internal,http://b/v1internal",
            "http://a/v1internal,http://b/v1internal",
        ),
    ],
)
def test_parse_cli_value(key: str, raw: str, expected: object) -> None:
    value = parse_cli_value(key, raw)
    assert value == expected
    assert type(value) is type(expected)


def test_parse_cli_value_unknown_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_cli_value("no_such_key", "1")
    assert info.value.key == "no_such_key"


def test_parse_cli_value_bad_bool() -> None:
    with pytest.raises(ConfigError):
        parse_cli_value("allow_lan_access", "maybe")


def test_parse_cli_then_update_round_trip(store: ConfigStore) -> None:
    assert store.update({"port": parse_cli_value("port", "9000")}).port == 9000
    with pytest.raises(ConfigError) as info:
        store.update({"port": parse_cli_value("port", "abc")})
    assert info.value.key == "port"


# -- atomic_write ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o640])
def test_atomic_write_mode_and_no_leftovers(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "secret.json"
    atomic_write(target, b"first", mode)
    atomic_write(target, b"second", mode)
    assert target.read_bytes() == b"second"
    assert mode_of(target) == mode
    assert os.listdir(tmp_path) == ["secret.json"]


def test_atomic_write_replaces_a_looser_file(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    target.write_text("old")
    target.chmod(0o644)
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert mode_of(target) == 0o600
    assert os.listdir(tmp_path) == ["config.json"]


def test_atomic_write_failure_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "dir-in-the-way"
    target.mkdir()
    (target / "child").write_text("x")  # a non-empty directory cannot be replaced
    with pytest.raises(OSError):
        atomic_write(target, b"data")
    assert sorted(os.listdir(tmp_path)) == ["dir-in-the-way"]
    assert (target / "child").read_text() == "x"


def test_config_dir_has_no_temp_files_after_updates(store: ConfigStore, data_dir: Path) -> None:
    for port in (9001, 9002, 9003):
        store.update({"port": port})
    leftovers = [n for n in os.listdir(data_dir) if n.endswith(".tmp")]
    assert leftovers == []
    assert mode_of(data_dir / CONFIG_FILE) == 0o600
