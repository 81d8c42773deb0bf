"""Thin wrappers over confluent-kafka: admin, source (consumer) and sink (producer).

confluent-kafka types stop here: the pipeline sees ``RawMessage``, ``OutputRecord``,
``DeliveryFailure`` and the project's error types, through its ``Source``/``Sink`` ports
(``worker.pipeline.ports``), which ``KafkaSource`` and ``KafkaSink`` implement.
"""
