"""A raw, pooled HTTP/1.1 client to member clusters: the upstream leg of the proxy's fast path.

asyncio protocols and httptools (llhttp), no framework: a request is one write on a pooled
keep-alive connection, and its answer's body is handed to the caller chunk by chunk as it arrives.
"""

from ..upstream_errors import DialFailed, InvalidAnswer
from .connection import Sink, UpstreamExchange
from .pool import UpstreamPool

__all__ = ["DialFailed", "InvalidAnswer", "Sink", "UpstreamExchange", "UpstreamPool"]
