"""Health: checks served from a cache, refreshed once at a time in the background.

Two rooms: ``monitor`` (``HealthMonitor``: when checks run and how long a caller may wait)
and ``checks`` (``ServicesProbe``: what is checked and what each outcome means, the overall
status, the detailed and anonymous views of a report). Import from them directly: this file
imports nothing.
"""
