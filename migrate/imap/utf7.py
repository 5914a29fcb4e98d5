"""Modified UTF-7 folder-name codec (RFC 3501 §5.1.3), re-exported so that code outside this
package never imports imapclient."""

from imapclient.imap_utf7 import decode, encode

__all__ = ["decode", "encode"]
