"""The CA server: its tasks, mail, revocation, the data directory and its settings."""
