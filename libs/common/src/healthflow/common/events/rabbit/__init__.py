"""The RabbitMQ transport (aio-pika), one module per concern.

* :mod:`.transport`: :class:`~.transport.RabbitTransport`: the connection,
  publishing with publisher confirms, recovery, drain on close.
* :mod:`.topology`: the exchange, the service queues, the retry (TTL) queues
  and the dead-letter queues, and their declaration.
* :mod:`.consumer`: one service's consumer: runs the handler per delivery, then
  acks, retries or parks (by the shared rule ``after_failure``).
* :mod:`.deadletters`: queue depths, listing and replay of parked messages
  (``healthflow-deadletters``).
* :mod:`.messages`: content type, message headers, copies of a delivery.
"""
