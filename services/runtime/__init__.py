"""The runtime every service stands on: settings, connections, consumers, telemetry.

Nothing here knows a game rule or a service; the services import it, never the reverse.
"""
