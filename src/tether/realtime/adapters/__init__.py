"""Adapters by name: ``tether.realtime.adapters.redis`` is :mod:`tether.realtime.redis`.

The in-memory :class:`~tether.realtime.Adapter` is the default and needs no import.
"""
