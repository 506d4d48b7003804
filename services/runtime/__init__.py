"""What every Convoy process shares: settings, logging, PostgreSQL, NATS, outbox, consumers."""
