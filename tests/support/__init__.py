"""Helpers the suite shares: real servers (redis-server, gunicorn) on free local ports."""
