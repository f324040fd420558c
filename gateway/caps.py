"""How many sockets one address and one player hold in this process, against their caps."""

from __future__ import annotations

from questlog.services.runtime.settings import RealtimeSettings


class ConnectionCaps:
    """Open sockets of this process, counted per address and per player against their caps."""

    def __init__(self, rt: RealtimeSettings) -> None:
        self._rt = rt
        self._per_ip: dict[str, int] = {}
        self._per_player: dict[str, int] = {}

    def ip_joined(self, ip: str) -> bool:
        if self._per_ip.get(ip, 0) >= self._rt.max_conns_per_ip:
            return False
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        return True

    def ip_left(self, ip: str) -> None:
        left = self._per_ip.get(ip, 0) - 1
        if left > 0:
            self._per_ip[ip] = left
        else:
            self._per_ip.pop(ip, None)

    def player_joined(self, player_id: str) -> bool:
        if self._per_player.get(player_id, 0) >= self._rt.max_conns_per_player:
            return False
        self._per_player[player_id] = self._per_player.get(player_id, 0) + 1
        return True

    def player_left(self, player_id: str) -> None:
        left = self._per_player.get(player_id, 0) - 1
        if left > 0:
            self._per_player[player_id] = left
        else:
            self._per_player.pop(player_id, None)
