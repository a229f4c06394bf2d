"""Talking to a running gateway's admin API from the CLI."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import click
import httpx
import orjson
from sqlalchemy import Engine

from agproxy.config import ConfigError, ConfigStore, Settings
from agproxy.datadir import RUNTIME_FILE, data_dir
from agproxy.db import StoreError, open_store


def load_settings(create: bool = False) -> ConfigStore:
    store = ConfigStore(data_dir())
    try:
        store.load(create=create)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from exc
    return store


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def gateway_address(store: ConfigStore) -> tuple[str, int]:
    """Where the running gateway listens: its runtime file, else the configured port."""
    try:
        info = orjson.loads((store.directory / RUNTIME_FILE).read_bytes())
        if _pid_alive(int(info["pid"])):
            return "127.0.0.1", int(info["port"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return "127.0.0.1", store.settings.port


@dataclass
class AdminClient:
    base_url: str
    secret: str

    @classmethod
    def from_data_dir(cls) -> AdminClient:
        store = load_settings()
        host, port = gateway_address(store)
        settings: Settings = store.settings
        return cls(f"http://{host}:{port}", settings.admin_secret)

    def call(self, method: str, path: str, json: Any = None) -> httpx.Response:
        try:
            return httpx.request(
                method,
                self.base_url + path,
                json=json,
                timeout=30,
                headers={"Authorization": f"Bearer {self.secret}"},
            )
        except httpx.ConnectError as exc:
            raise click.ClickException(
                f"no gateway answers at {self.base_url} ({exc}). Start one with `agproxy serve`."
            ) from exc

    def call_ok(self, method: str, path: str, json: Any = None) -> Any:
        response = self.call(method, path, json)
        if response.status_code == 401:
            raise click.ClickException(
                f"the gateway at {self.base_url} refused the admin password. The CLI reads it "
                "from the data directory (admin_password, else api_key); check AGPROXY_DATA_DIR "
                "points at the gateway's data directory."
            )
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text
            raise click.ClickException(message)
        return response.json()


def open_data_dir_store(store: ConfigStore) -> Engine:
    """The store the data directory's settings name (store_url), for commands that work
    on it directly; a store that cannot be opened is a one-line error."""
    try:
        return open_store(store.settings, store.directory)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc


@contextlib.contextmanager
def data_dir_engine() -> Iterator[Engine]:
    """The data directory's store, for commands that work on it directly."""
    engine = open_data_dir_store(load_settings(create=True))
    try:
        yield engine
    finally:
        engine.dispose()
