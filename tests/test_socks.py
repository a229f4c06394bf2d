"""SOCKS5 upstream proxies (issue 13): per account and global, socks5:// and socks5h://,
against a real SOCKS5 server (tests/socks_server.py) in front of the fake Google.

End to end, the official OpenAI SDK talks to a real `agproxy serve` whose account reaches
the fake through the SOCKS server; below that, the Cloud Code client and the sessions
are driven directly.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from socks_server import Connect, SocksServer
from test_upstream import access_token, envelope, run_client

from agproxy.upstream import CloudCodeClient, Credentials, Failure, UpstreamError
from agproxy.upstream.sessions import Sessions
from conftest import Gateway, add_to, agproxy_env, free_port, google_env, run_cli, spawn

PASSWORD = "s0cks-pass-" + uuid.uuid4().hex[:8]


def fake_port(fake: Any) -> int:
    return int(fake.port)


def set_account_proxy(gw: Gateway, url: str | None) -> dict[str, Any]:
    account = gw.admin("GET", "/api/accounts").json()["accounts"][0]["id"]
    answer = gw.admin("PUT", f"/api/accounts/{account}", json={"proxy_url": url})
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["account"])


def ask(gw: Gateway, text: str, stream: bool = False) -> str:
    client = openai.OpenAI(api_key=gw.api_key, base_url=gw.base_url + "/v1", max_retries=0)
    messages: Any = [{"role": "user", "content": text}]
    if stream:
        chunks = client.chat.completions.create(
            model="gemini-3-flash", messages=messages, stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    answer = client.chat.completions.create(model="gemini-3-flash", messages=messages)
    return answer.choices[0].message.content or ""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    """One gateway with one account. The upstream bases are a setting of the config file
    (not the environment), so that a test can name the fake by host name."""
    fake = fake_google_server
    env = {k: v for k, v in google_env(fake).items() if k != "AGPROXY_UPSTREAM_BASE_URLS"}
    config = {"upstream_base_urls": [fake.v1internal]}
    gw = spawn(tmp_path_factory.mktemp("socks"), config=config, **env)
    assert add_to(gw, fake.add_account(email=f"socks-{uuid.uuid4().hex[:6]}@example.com"))
    yield gw
    gw.stop()


def use_bases(gw: Gateway, host: str, fake: Any) -> None:
    bases = [fake.v1internal.replace("127.0.0.1", host)]
    assert gw.admin("PUT", "/api/config", json={"upstream_base_urls": bases}).status_code == 200


# -- end to end: the OpenAI SDK → agproxy → SOCKS5 → the fake Google ---------------------------
def test_a_request_through_a_per_account_socks5_proxy_reaches_the_fake(
    served: Gateway, fake_google: Any
) -> None:
    use_bases(served, "127.0.0.1", fake_google)
    with SocksServer() as socks:
        shown = set_account_proxy(served, socks.url("socks5"))
        assert shown["proxy_url"] == socks.url("socks5")
        assert ask(served, "through socks") == "echo: through socks"
        assert ask(served, "streamed through socks", stream=True) == (
            "echo: streamed through socks"
        )
    # socks5:// resolves names here: the proxy was asked for the fake's address.
    assert Connect("127.0.0.1", fake_port(fake_google), "ipv4") in socks.connects
    assert socks.logins == []  # no login offered, none asked for
    assert len(fake_google.calls("streamGenerateContent")) == 2
    set_account_proxy(served, None)


def test_socks5h_with_a_login_lets_the_proxy_resolve_the_name(
    served: Gateway, fake_google: Any
) -> None:
    use_bases(served, "localhost", fake_google)
    try:
        with SocksServer(login=("alice", PASSWORD)) as socks:
            shown = set_account_proxy(served, socks.url("socks5h", "alice", PASSWORD))
            assert shown["proxy_url"] == f"socks5h://alice:••••@127.0.0.1:{socks.port}"
            assert ask(served, "by name") == "echo: by name"
    finally:
        use_bases(served, "127.0.0.1", fake_google)
        set_account_proxy(served, None)
    assert socks.connects == [Connect("localhost", fake_port(fake_google), "domain")]
    assert socks.logins == [("alice", PASSWORD, True)]


def test_a_wrong_socks_password_is_a_clear_502_and_no_password_is_shown(
    gateway_factory: Any, fake_google: Any
) -> None:
    gw = gateway_factory("wrong", **google_env(fake_google))
    add_to(gw, fake_google.add_account(email=f"wrong-{uuid.uuid4().hex[:6]}@example.com"))
    global_password = "gl0bal-" + PASSWORD
    global_proxy = f"socks5://bob:{global_password}@10.0.0.9:1080"
    assert gw.cli("config", "set", "upstream_proxy", global_proxy).returncode == 0
    with SocksServer(login=("alice", "the-right-one")) as socks:
        shown = set_account_proxy(gw, socks.url("socks5h", "alice", PASSWORD))
        assert PASSWORD not in str(shown)
        with pytest.raises(openai.APIStatusError) as failed:
            ask(gw, "will not pass")
    assert failed.value.status_code == 502
    error = failed.value.response.json()["error"]
    refusal = "the SOCKS proxy refused: Username and password authentication failure"
    assert refusal in error["message"]
    assert error["type"]  # the OpenAI error shape
    assert socks.connects == [] and {ok for *_, ok in socks.logins} == {False}
    assert fake_google.calls("streamGenerateContent") == []
    seen = [
        gw.cli("accounts", "list").stdout,
        gw.cli("accounts", "list", "--json").stdout,
        gw.cli("config", "get").stdout,
        gw.admin("GET", "/api/accounts").text,
        gw.admin("GET", "/api/config").text,
        gw.admin("GET", "/api/logs").text,
    ]
    config = gw.admin("GET", "/api/config").json()["config"]
    assert config["upstream_proxy"] == "socks5://bob:••••@10.0.0.9:1080"
    gw.stop()
    seen.append("".join(gw.output))
    assert "socks5h://alice:••••@" in seen[1]  # shown, masked
    assert "socks5h://alice:••••@" in seen[-1]  # the change is logged, masked
    for text in seen:
        assert PASSWORD not in text and global_password not in text


def test_the_global_socks_proxy_carries_adding_an_account(tmp_path: Any, fake_google: Any) -> None:
    """`accounts add` (token, userinfo, project, quota) goes through `upstream_proxy`."""
    acct = fake_google.add_account(email=f"glob-{uuid.uuid4().hex[:6]}@example.com")
    with SocksServer(login=("carol", PASSWORD)) as socks:
        env = agproxy_env(
            tmp_path,
            **google_env(fake_google),
            AGPROXY_UPSTREAM_PROXY=socks.url("socks5", "carol", PASSWORD),
        )
        added = run_cli(tmp_path, "accounts", "add", "--refresh-token", acct.refresh_token, env=env)
    assert added.returncode == 0, added.stderr
    assert f"added {acct.email}" in added.stdout
    fake = Connect("127.0.0.1", fake_port(fake_google), "ipv4")
    assert socks.connects and set(socks.connects) == {fake}
    assert {ok for *_, ok in socks.logins} == {True}
    assert {"token", "userinfo"} <= {r.rpc for r in fake_google.calls()}


# -- the Cloud Code client and the sessions --------------------------------------------------
@pytest.fixture
def acct(fake_google: Any) -> Any:
    return fake_google.add_account(email=f"sx-{uuid.uuid4().hex[:8]}@example.com", project="p-s")


def test_the_client_streams_through_socks5h(fake_google: Any, acct: Any) -> None:
    token = access_token(fake_google, acct)
    with SocksServer(login=("u", "p")) as socks:

        async def work(client: CloudCodeClient) -> list[Any]:
            creds = Credentials(token, acct.project, proxy=socks.url("socks5h", "u", "p"))
            return [e async for e in client.stream(envelope(acct, "sse via socks"), creds)]

        events = run_client((fake_google.v1internal,), work)
    text = "".join(
        p.get("text", "") for e in events for p in e["candidates"][0]["content"]["parts"]
    )
    assert text.endswith("echo: sse via socks")
    assert socks.connects == [Connect("127.0.0.1", fake_port(fake_google), "ipv4")]


def test_an_unreachable_socks_proxy_is_a_transport_failure_naming_no_address(
    fake_google: Any, acct: Any
) -> None:
    port = free_port()  # nothing listens there

    async def work(client: CloudCodeClient) -> Any:
        creds = Credentials("token", acct.project, proxy=f"socks5://u:p@127.0.0.1:{port}")
        return await client.generate(envelope(acct), creds)

    with pytest.raises(UpstreamError) as failed:
        run_client((fake_google.v1internal,), work)
    assert failed.value.kind is Failure.TRANSPORT and failed.value.status == 502
    assert failed.value.message == (
        "the upstream call failed: could not connect to the proxy (Connection refused)"
    )


def test_sessions_one_per_socks_url_http_proxies_share_the_direct_one() -> None:
    async def main() -> None:
        sessions = Sessions(max_socks=2)
        direct = sessions.lease(None)
        http = sessions.lease("http://127.0.0.1:3128")
        assert http.session is direct.session and http.proxy == "http://127.0.0.1:3128"
        first = sessions.lease("socks5://127.0.0.1:1")
        again = sessions.lease("socks5://127.0.0.1:1")
        assert first.session is again.session and first.session is not direct.session
        assert first.proxy is None  # the connector is the proxy
        second = sessions.lease("socks5h://127.0.0.1:2")
        assert second.session is not first.session and sessions.socks_sessions == 2
        await sessions.close()
        assert direct.session.closed and first.session.closed and second.session.closed

    asyncio.run(main())


def test_an_evicted_socks_session_closes_once_its_calls_are_done() -> None:
    async def main() -> None:
        sessions = Sessions(max_socks=1)
        busy = sessions.lease("socks5://127.0.0.1:1")
        idle = sessions.lease("socks5://127.0.0.1:2")  # evicts the busy one
        idle.release()
        await asyncio.sleep(0)
        assert not busy.session.closed  # a call still reads from it
        busy.release()
        busy.release()  # a second release changes nothing
        await asyncio.sleep(0.01)
        assert busy.session.closed
        sessions.lease("socks5://127.0.0.1:3").release()  # evicts the idle one at once
        await asyncio.sleep(0.01)
        assert idle.session.closed and sessions.socks_sessions == 1
        await sessions.close()

    asyncio.run(main())
