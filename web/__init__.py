"""The web edge: sockets (transport, feeds, the visitor socket), pages, health, templates."""
