"""The aiohttp WebSocket / HTTP JSON-RPC gateway."""
