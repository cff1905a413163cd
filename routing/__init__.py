"""Routing: where an escalated conversation goes (presence, queues and assignment grow here)."""
