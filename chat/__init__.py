"""The live service: configuration and web endpoints, growing into store, routing and hub."""
