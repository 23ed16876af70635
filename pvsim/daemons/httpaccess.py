"""Who the daemons' HTTP endpoint answers: the Host names it accepts and the token writes carry.

- the Host header must be an IP address, localhost, or a name in api.allowed_hosts (the endpoint
  answers 421 otherwise): a web page in a browser on this host cannot reach the endpoint by DNS
  rebinding, which needs a name of the attacker's;
- with api.token_file, a POST must carry "Authorization: Bearer TOKEN" (401 otherwise). The token
  file must be unreadable by others, as a password file is.

The decisions are here; the answers they lead to are `httpserver.Endpoint`'s.
"""

from __future__ import annotations

import hmac
import ipaddress
import stat
from dataclasses import dataclass
from pathlib import Path

from pvsim import config as configmod


@dataclass(frozen=True)
class Access:
    """Who the endpoint answers: the host names it accepts and the token writes must carry."""

    names: frozenset[str] = frozenset({"localhost"})
    token: str | None = None

    @classmethod
    def from_config(cls, cfg: configmod.Config) -> "Access":
        """From api.allowed_hosts and api.token_file; ConfigError when the token file is
        unreadable, empty, or readable by others."""
        names = {"localhost", *(n.lower().rstrip(".") for n in cfg.api.allowed_hosts)}
        token = _read_token(cfg) if cfg.api.token_file else None
        return cls(frozenset(names), token)

    def host_allowed(self, host: str) -> bool:
        name = _host_name(host)
        if not name:
            return False
        try:
            ipaddress.ip_address(name)
            return True  # an address, not a name: DNS rebinding needs a name
        except ValueError:
            return name.lower().rstrip(".") in self.names

    def write_allowed(self, authorization: str) -> bool:
        if self.token is None:
            return True
        scheme, _, given = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                                  self.token.encode())


def _host_name(host: str) -> str:
    """The name part of a Host header: 'example.org:9762' -> 'example.org', '[::1]:9762' -> '::1'."""
    host = host.strip()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _read_token(cfg: configmod.Config) -> str:
    path, key = Path(cfg.api.token_file), "api.token_file"
    try:
        mode = path.stat().st_mode
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise configmod.ConfigError(cfg.source, key, f"cannot read {path}: "
                                    f"{getattr(exc, 'strerror', None) or exc}") from None
    if mode & stat.S_IRWXO:
        raise configmod.ConfigError(cfg.source, key, f"{path} is readable by others: "
                                    f"chmod 0640 {path} (owner root, group pvsim)")
    if not token or any(c.isspace() for c in token):
        raise configmod.ConfigError(cfg.source, key, f"{path} must hold one token, "
                                    "without white space")
    return token
