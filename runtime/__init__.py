"""Process plumbing: configuration, the embedded Redis, logs, the collector, the wiring of parts."""
