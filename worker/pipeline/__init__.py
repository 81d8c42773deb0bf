"""The consume loop and one batch's work, made of small parts wired in ``worker.app``.

- ``runner``: the loop (poll, process, commit; back off and rewind on a transient error)
- ``ports``: the ``Source``/``Sink`` protocols the pipeline needs from the broker
- ``orchestrator``: one batch (decode → resolve per tenant → outputs → deliver → ack)
- ``decoding``: input messages and released payloads into ``Decoded`` items, or dead letters
- ``outputs``: the output records of one resolved event (pure)
- ``delivery``: produce, wait for acknowledgements, dead-letter inputs whose output is too large
- ``emit``: released events' outputs, delivery, accounting, buffer acks (end of every batch)
- ``releaser``: buffer housekeeping between batches
- ``items``, ``offsets``, ``deadletter``, ``person_changes``: values and small pure helpers
"""
