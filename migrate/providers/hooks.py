"""``ProviderHooks`` subclasses: behaviour data cannot express (see ``migrate.providers.register``)."""

from __future__ import annotations

from migrate.providers import register
from migrate.providers.base import ProviderHooks

MS_IMAP_HINT = ("Microsoft accepted the sign-in but not IMAP: IMAP may be disabled for this mailbox or the "
                "tenant (Microsoft 365 admin center > Users > the user > Mail > Manage email apps > IMAP; "
                "security defaults can block it too), or the token lacks IMAP.AccessAsUser.All")


@register("gmail")
class GoogleHooks(ProviderHooks):
    def oauth_login_hint(self, auth: str) -> str | None:
        return ("check that IMAP is enabled in Gmail settings (Workspace: allowed by the admin) and that "
                f"the token has the https://mail.google.com/ scope; or sign in again: {auth}")


@register("outlook")
@register("microsoft365")
class MicrosoftHooks(ProviderHooks):
    def oauth_login_hint(self, auth: str) -> str | None:
        return f"{MS_IMAP_HINT}; or sign in again: {auth}"
