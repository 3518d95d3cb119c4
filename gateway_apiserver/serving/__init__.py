"""The HTTP serving layer: the listener, connection timeouts, low-level errors and graceful shutdown.

aiohttp internals are used in `aiohttp_protocol.py` only; the rest is plain asyncio and public aiohttp API.
"""
