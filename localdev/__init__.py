"""Local development: sample data, the local demo and (later) the EMR emulator."""
