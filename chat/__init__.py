"""Conversations: their record and log, the lifecycle of their status, the bot's turns, the hub."""
