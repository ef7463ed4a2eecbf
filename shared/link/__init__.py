"""The link protocol between a site and the central, sans-I/O.

Nothing in this package performs I/O or imports asyncio, aiohttp or socket (a lint rule in
`shared/link/ruff.toml` enforces it): a `LinkConnection` takes the bytes that arrived and
returns what they mean as events, and turns the application's requests and answers into
bytes for whatever transport carries them. See docs/design/protocol.md.
"""
