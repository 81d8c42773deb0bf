"""Thin wrappers over confluent-kafka: admin, source (consumer) and sink (producer).

confluent-kafka types stop here: the pipeline sees ``RawMessage``, ``OutputRecord`` and the
project's error types.
"""
