"""The link protocol over real connections: WebSocket sessions, the client, dialling."""
