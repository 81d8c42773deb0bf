"""identity-worker: resolves distinct ids to persons through a union-find kept in Redis.

Kafka in (identify, alias, track), enriched events, overrides, warnings and dead letters out.
"""

__version__ = "0.1.0"
