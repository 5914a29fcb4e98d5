"""IMAP endpoint over imapclient: the only package that imports imapclient."""

from .session import ImapEndpoint, connect

__all__ = ["ImapEndpoint", "connect"]
