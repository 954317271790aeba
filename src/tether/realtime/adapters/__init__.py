"""Adapters: where rooms live and how a broadcast reaches every node.

* :mod:`.base`: :class:`~tether.realtime.Adapter`, the interface a broker
  adapter implements, and its in-memory implementation (the default, one
  process);
* :mod:`.redis`: :class:`~tether.realtime.adapters.redis.RedisAdapter`, many
  processes on many machines as one (the ``redis`` extra);
* :mod:`.cluster`: :class:`~tether.realtime.adapters.cluster.ClusterAdapter`
  and its :class:`~tether.realtime.adapters.cluster.ClusterHub`, the worker
  processes of one machine as one, without a broker (standard library only).
"""
