"""mailmigrate: bulk mailbox migration engine (IMAP, Maildir, mbox -> IMAP, Maildir)."""

__version__ = "0.1.0"
