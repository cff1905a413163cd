"""The bot: the flow language, its checker and the engine that runs a turn.

Pure: nothing here touches Redis, Flask or sockets (bots.cli alone imports Flask).
"""
