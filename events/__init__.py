"""What happened: event schemas, subjects, streams and the JetStream event store."""
