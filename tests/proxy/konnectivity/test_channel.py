"""The shared channel to the proxy-server: keepalive that grpc-go's default enforcement accepts, files read
when first dialled, and a rebuild that backs off."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_apiserver.proxy.konnectivity.channel import (
    CHANNEL_OPTIONS,
    ChannelUnavailable,
    KonnectivitySettings,
    ProxyServerChannel,
)

GRPC_GO_MIN_PING_INTERVAL_MS = 5 * 60 * 1000  # keepalive.EnforcementPolicy's default MinTime, which ANP's frontend keeps


def test_pings_are_rarer_than_grpc_go_enforces_and_never_sent_on_an_idle_connection() -> None:
    options = dict(CHANNEL_OPTIONS)
    assert options["grpc.keepalive_time_ms"] > GRPC_GO_MIN_PING_INTERVAL_MS
    assert options["grpc.keepalive_permit_without_calls"] == 0  # with no stream, grpc-go wants 2 hours between pings


async def test_unreadable_files_are_reported_at_the_first_dial_and_backed_off(tmp_path: Path) -> None:
    settings = KonnectivitySettings("proxy.test", 8090, tmp_path / "ca.crt", tmp_path / "tls.crt", tmp_path / "tls.key")
    channel = ProxyServerChannel(settings)  # nothing is read yet: the gateway starts without the files
    with pytest.raises(ChannelUnavailable) as raised:
        channel.get()
    assert raised.value.cause == f"the gateway cannot read --proxy-ca-cert {tmp_path / 'ca.crt'}: No such file or directory"
    for name in ("ca.crt", "tls.crt", "tls.key"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(ChannelUnavailable):  # still backing off: the last cause again
        channel.get()
    assert channel.built == 0
    await channel.close()
