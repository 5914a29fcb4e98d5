"""Real IMAP servers other than Dovecot for integration tests (see README.md here)."""
