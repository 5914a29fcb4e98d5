"""Which source servers the service connects to.

A person names the server of their old mailbox, so without a check anyone could make the service
connect into the operator's own network (127.0.0.1, 10.x, the cloud's 169.254.169.254, ...).
Source hosts that resolve to such addresses are refused unless the operator allows their range
(``serve --allow-source-network CIDR``). The check runs when an import is submitted and again
in the worker right before it connects, on the address it then connects to: a name's DNS answer
may change in between. A provider preset's own server is public and is not checked.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .. import providers
from ..errors import ConnectFailed, MigrateError

if TYPE_CHECKING:
    from ..sides import SideOptions

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(ranges: Iterable[str]) -> tuple[IpNetwork, ...]:
    """``--allow-source-network`` values as networks; ValueError naming the bad one."""
    out = []
    for text in ranges:
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(text) from None
    return tuple(out)


def is_internal(address: IpAddress) -> bool:
    """Loopback, private (RFC 1918, fc00::/7), link-local, multicast, unspecified, reserved or
    otherwise not globally reachable (e.g. 100.64.0.0/10)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return (address.is_loopback or address.is_private or address.is_link_local or address.is_multicast
            or address.is_unspecified or address.is_reserved or not address.is_global)


def is_preset_host(provider: str | None, host: str | None) -> bool:
    """Whether ``host`` is the provider preset's own IMAP server (or no host is given: the
    preset's is used)."""
    if not host:
        return True
    try:
        preset = providers.get(provider) if provider else None
    except MigrateError:
        return False
    return bool(preset and preset.imap_host and preset.imap_host.lower() == host.lower())


class PrivateSourceServer(ConnectFailed):
    """A source server on an internal network the operator has not allowed."""

    reference = "source-network-refused"

    def __init__(self, host: str) -> None:
        super().__init__(f"the server {host} is on a private network: the service does not connect there",
                         hint="give the public name of your old mail server")
        self.host = host


class SourceNetworks:
    """The operator's policy for source servers: internal addresses refused unless allowed."""

    def __init__(self, allowed: Iterable[IpNetwork] = ()) -> None:
        self.allowed = tuple(allowed)

    def refusal(self, host: str, address: IpAddress) -> PrivateSourceServer | None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not is_internal(address) or any(address in net for net in self.allowed
                                           if net.version == address.version):
            return None
        return PrivateSourceServer(host)

    def check_submitted(self, provider: str | None, host: str | None, port: int | None) -> None:
        """At submit time: raise PrivateSourceServer when ``host`` resolves to a refused address.
        A name that does not resolve passes here; the worker's connect says so."""
        if is_preset_host(provider, host):
            return
        assert host is not None
        try:
            addresses = resolve(host, port or 993)
        except OSError:
            return
        for address in addresses:
            refused = self.refusal(host, address)
            if refused is not None:
                raise refused

    def address_to_connect(self, host: str, port: int) -> str:
        """In the worker, right before connecting: resolve ``host`` once, check every address and
        return the one to connect to (the caller keeps ``host`` for TLS). Raises ConnectFailed."""
        try:
            addresses = resolve(host, port)
        except OSError as exc:
            raise ConnectFailed(f"the server {host} cannot be found ({exc.strerror or type(exc).__name__})",
                                hint="check the server name") from None
        for address in addresses:  # one internal answer among public ones is refused too
            refused = self.refusal(host, address)
            if refused is not None:
                raise refused
        return str(addresses[0])


def resolve(host: str, port: int) -> list[IpAddress]:
    """Every address ``host`` resolves to (an IP literal: itself), in the resolver's order."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[IpAddress] = []
    for *_rest, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if address not in out:
            out.append(address)
    if not out:
        raise OSError(f"no address for {host}")
    return out


def guard_source(options: SideOptions, networks: SourceNetworks) -> None:
    """Make a job's source side check its server's address right before each connection (and
    connect to the checked address) unless it is the preset's own server."""
    if not is_preset_host(options.provider, options.host):
        options.address_guard = networks.address_to_connect
