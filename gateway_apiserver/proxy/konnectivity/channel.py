"""The one gRPC channel a gateway keeps to the Konnectivity proxy-server, shared by every tunnel.

Mutual TLS from the --proxy-ca-cert, --proxy-cert and --proxy-key files, read when the channel is
built: on the first dial (as the reference reads them when it dials) and again on every rebuild,
so rotated files are picked up once the old connection fails. The TLS server name is the proxy
host; gRPC's TLS is 1.2 or newer.

Keepalive must never trip grpc-go's default enforcement on the proxy-server, which answers pings
closer than 5 minutes apart while streams are open (and any within 2 hours while none are) with a
GOAWAY `too_many_pings`. So pings go only while calls are open, every 6 minutes.

A channel that fails to connect (UNAVAILABLE before a dial is answered) is dropped and rebuilt on
a later dial, no sooner than an exponential backoff (0.2 s doubling to 5 s) after the last attempt;
dials in between fail at once with the last cause. The dropped channel closes once its open streams
end, so other clusters' working tunnels are never cut by one failed dial.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc import aio

PING_INTERVAL_MS = 6 * 60 * 1000  # > grpc-go's default EnforcementPolicy.MinTime (5 min)
PING_TIMEOUT_MS = 20 * 1000
BACKOFF_FIRST, BACKOFF_MAX = 0.2, 5.0
RETIRED_GRACE = 3600.0  # a channel dropped after a failed dial closes once its streams end (or after an hour)
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", PING_INTERVAL_MS),
    ("grpc.keepalive_timeout_ms", PING_TIMEOUT_MS),
    ("grpc.keepalive_permit_without_calls", 0),  # never ping an idle connection (grpc-go wants 2 h then)
    ("grpc.http2.max_pings_without_data", 0),  # keep checking a long quiet watch, 6 minutes apart
)


@dataclass(frozen=True, slots=True)
class KonnectivitySettings:
    """Where the proxy-server is and the files of the gateway's client identity for it."""

    host: str
    port: int
    ca_file: Path
    cert_file: Path
    key_file: Path

    @property
    def address(self) -> str:
        """host:port, as messages show it and gRPC dials it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class ChannelUnavailable(Exception):
    """No channel now; `cause` says why (without naming a cluster: it is the same for all)."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ChannelUnavailable(f"the gateway cannot read {flag} {path}: {exc.strerror or 'unreadable'}") from None


class ProxyServerChannel:
    """The shared channel: built on first use, rebuilt with backoff after it failed to connect."""

    def __init__(self, settings: KonnectivitySettings) -> None:
        self.settings = settings
        self._channel: aio.Channel | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._last_error: str | None = None
        self._retired: dict[asyncio.Task[None], aio.Channel] = {}  # channels left to finish their streams
        self.built = 0  # channels built, for tests

    def get(self) -> aio.Channel:
        """The channel; raises the last failure while a rebuild is backing off (or the files are unreadable)."""
        if self._channel is not None:
            return self._channel
        if self._last_error is not None and time.monotonic() < self._retry_at:
            raise ChannelUnavailable(self._last_error)
        s = self.settings
        try:
            credentials = grpc.ssl_channel_credentials(
                _read(s.ca_file, "--proxy-ca-cert"), _read(s.key_file, "--proxy-key"), _read(s.cert_file, "--proxy-cert")
            )
        except ChannelUnavailable as exc:
            self.failed(None, exc.cause)
            raise
        self._channel = aio.secure_channel(s.address, credentials, options=CHANNEL_OPTIONS)
        self.built += 1
        return self._channel

    def succeeded(self) -> None:
        """A dial was answered: the channel works, the backoff starts over."""
        self._failures, self._last_error = 0, None

    def failed(self, channel: aio.Channel | None, cause: str) -> None:
        """`channel` could not reach the proxy-server (`cause`): new dials stop using it (a new one is built after
        the backoff). Its open tunnels, if any still work, are left to end by themselves: one failed dial never
        cuts other clusters' tunnels."""
        self._last_error = cause
        self._retry_at = time.monotonic() + min(BACKOFF_FIRST * 2**self._failures, BACKOFF_MAX)
        self._failures += 1
        if channel is not None and channel is self._channel:
            self._channel = None
            task = asyncio.get_running_loop().create_task(channel.close(RETIRED_GRACE))
            self._retired[task] = channel
            task.add_done_callback(lambda done: self._retired.pop(done, None))

    async def close(self) -> None:
        """Close the channel and any retired one (their streams end at once)."""
        channels = [self._channel, *self._retired.values()]
        self._channel = None
        for task in list(self._retired):
            task.cancel()
        await asyncio.gather(*self._retired, return_exceptions=True)
        for channel in channels:
            if channel is not None:
                with contextlib.suppress(Exception):
                    await channel.close(None)
