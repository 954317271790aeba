"""Adapters: where rooms live and how a broadcast reaches every node.

* :mod:`.base`: :class:`~tether.realtime.Adapter`, the interface a broker
  adapter implements, and its in-memory implementation (the default, one
  process);
* :mod:`.redis`: :class:`~tether.realtime.adapters.redis.RedisAdapter`, many
  processes on many machines as one (the ``redis`` extra).
"""
