"""Authenticator wiring: OIDC (the default) or GitHub, with groups mapped to JupyterHub groups.

Everything the hub needs to sign users in is read from the environment here, checked, and
turned into traitlets config. Problems stop the hub at start-up with one :class:`HubConfigError`
whose message names the setting to fix; a hub that starts and then fails every login is worse.

Secrets (the OAuth client secret) are read from an environment variable or, preferably, a file,
and are never put in an error message or a log line.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.github import GitHubOAuthenticator
from traitlets import HasTraits, Unicode
from traitlets.config import Config

from kubelab.core.catalogue import Catalogue

log = logging.getLogger("JupyterHub")

#: Modes of ``KUBELAB_AUTH``.
AUTH_MODES = ("oidc", "github")
#: The client id the local provider and the Helm chart use unless told otherwise.
DEFAULT_CLIENT_ID = "kubelab-hub"
#: Scopes asked of the OIDC provider; ``groups`` carries the group claim.
OIDC_SCOPES = ("openid", "profile", "email", "groups")
#: ``KUBELAB_ALLOWED_GROUPS`` value that lets every user the issuer authenticates in.
ALLOW_ALL = "*"


class HubConfigError(RuntimeError):
    """The hub cannot start; the message says what to fix and never contains a secret."""


def split_list(value: str | None) -> list[str]:
    """Split a comma- or space-separated setting into its non-empty items, in order.

    Args:
        value: The raw setting, e.g. ``"gpu-users, students"``; ``None`` is empty.
    """
    return [item for item in (value or "").replace(",", " ").split() if item]


@dataclass(frozen=True)
class SecretSource:
    """Where the authenticator reads its client secret: a file, else an environment variable.

    Only the *place* goes into the hub's config, never the value: traitlets logs the whole
    config at DEBUG level ("Config changed: ..."), and a secret in it would land in the log.

    Attributes:
        file: Path of a file holding the secret, or None.
        env_var: Name of an environment variable holding it (used when ``file`` is None).
    """

    file: str | None
    env_var: str


def find_secret(environ: Mapping[str, str], value_var: str, file_var: str) -> SecretSource:
    """Check that a client secret is available from ``$file_var`` (a file) or ``$value_var``.

    The file wins when both are set, because files stay out of ``ps`` and process dumps.
    The secret is read here only to check it is there; it is not returned.

    Args:
        environ: The environment to read.
        value_var: Name of the variable that may hold the secret itself.
        file_var: Name of the variable that may hold a path to a file with the secret.

    Raises:
        HubConfigError: Neither is set, the file cannot be read, or it is empty.
    """
    path = environ.get(file_var)
    if path:
        read_secret_file(path, file_var)
        return SecretSource(file=path, env_var=value_var)
    if not (environ.get(value_var) or "").strip():
        raise HubConfigError(f"no OAuth client secret: set {file_var} to a file holding it (or {value_var})")
    return SecretSource(file=None, env_var=value_var)


def read_secret_file(path: str, setting: str) -> str:
    """Read a secret file.

    Args:
        path: The file.
        setting: The setting that named it, for the error message.

    Raises:
        HubConfigError: The file cannot be read or is empty.
    """
    try:
        secret = Path(path).read_text().strip()
    except OSError as e:
        raise HubConfigError(f"{setting}={path}: cannot read the client secret file: {e.strerror}") from e
    if not secret:
        raise HubConfigError(f"{setting}={path}: the client secret file is empty")
    return secret


class SecretFileMixin(HasTraits):
    """Lets an OAuthenticator read ``client_secret`` from a file or a named environment variable.

    The value never passes through traitlets config, so DEBUG logs of the config hold only
    the file's path.
    """

    client_secret_file = Unicode(
        "",
        config=True,
        help="""
        Path of a file holding the OAuth client secret (surrounding whitespace is ignored).
        Preferred over putting the secret in config, which traitlets logs at DEBUG level.
        Default: empty (use ``client_secret_env_var``). Example: ``/etc/kubelab/oidc-secret``.

        .. versionadded:: 0.1
        """,
    )
    client_secret_env_var = Unicode(
        "",
        config=True,
        help="""
        Name of an environment variable holding the OAuth client secret, used when
        ``client_secret_file`` is empty. Default: empty. Example: ``KUBELAB_OIDC_CLIENT_SECRET``.

        .. versionadded:: 0.1
        """,
    )

    def _client_secret_default(self) -> str:
        # Overrides OAuthenticator's default, which only knows fixed variable names.
        if self.client_secret_file:
            return read_secret_file(self.client_secret_file, f"{type(self).__name__}.client_secret_file")
        return os.environ.get(self.client_secret_env_var, "").strip() if self.client_secret_env_var else ""


class KubelabOIDCAuthenticator(SecretFileMixin, GenericOAuthenticator):
    """GenericOAuthenticator whose client secret comes from a file or a named variable."""


class KubelabGitHubAuthenticator(SecretFileMixin, GitHubOAuthenticator):
    """GitHubOAuthenticator whose client secret comes from a file or a named variable."""


def catalogue_groups(catalogue: Catalogue) -> set[str]:
    """Every group the catalogue mentions: in profiles and in group quotas."""
    groups: set[str] = set(catalogue.group_limits)
    for profile in catalogue.profiles:
        groups |= profile.groups
    return groups


def allowed_groups_from(environ: Mapping[str, str], catalogue: Catalogue, admin_groups: Iterable[str]) -> set[str] | None:
    """The groups whose members may sign in; ``None`` means every authenticated user.

    ``KUBELAB_ALLOWED_GROUPS`` wins; ``*`` allows everyone. By default the groups the catalogue
    mentions plus the admin groups are allowed, so that a group the admin wrote policy for
    can always sign in and nobody else can by accident.
    """
    raw = environ.get("KUBELAB_ALLOWED_GROUPS")
    if raw is not None and raw.strip() == ALLOW_ALL:
        return None
    groups = set(split_list(raw)) if raw is not None else catalogue_groups(catalogue)
    return groups | set(admin_groups)


@dataclass(frozen=True)
class OidcSettings:
    """What GenericOAuthenticator needs, read from the environment.

    Attributes:
        issuer: The issuer URL, without a trailing slash.
        client_id: The hub's OAuth client id.
        secret: Where the client secret is read from (never the value).
        public_url: The hub's public URL (what browsers open), without a trailing slash.
        allowed_groups: Groups that may sign in; ``None`` allows every authenticated user.
        admin_groups: Members of these groups are JupyterHub admins.
        groups_claim: The userinfo claim that lists the user's groups.
        username_claim: The claim used as the JupyterHub user name.
    """

    issuer: str
    client_id: str
    secret: SecretSource
    public_url: str
    allowed_groups: frozenset[str] | None
    admin_groups: frozenset[str]
    groups_claim: str = "groups"
    username_claim: str = "preferred_username"

    @classmethod
    def from_env(cls, environ: Mapping[str, str], catalogue: Catalogue) -> OidcSettings:
        """Read and check the OIDC settings.

        Raises:
            HubConfigError: The issuer or the client secret is missing or malformed.
        """
        issuer = (environ.get("KUBELAB_OIDC_ISSUER") or "").rstrip("/")
        if not issuer:
            raise HubConfigError("KUBELAB_OIDC_ISSUER is not set: give the OIDC issuer URL, e.g. https://sso.example.org")
        if urllib.parse.urlsplit(issuer).scheme not in ("http", "https"):
            raise HubConfigError(f"KUBELAB_OIDC_ISSUER={issuer}: must be an http(s) URL")
        admin_groups = frozenset(split_list(environ.get("KUBELAB_ADMIN_GROUPS", "admins")))
        allowed = allowed_groups_from(environ, catalogue, admin_groups)
        return cls(
            issuer=issuer,
            client_id=environ.get("KUBELAB_OIDC_CLIENT_ID") or DEFAULT_CLIENT_ID,
            secret=find_secret(environ, "KUBELAB_OIDC_CLIENT_SECRET", "KUBELAB_OIDC_CLIENT_SECRET_FILE"),
            public_url=public_url_from(environ),
            allowed_groups=None if allowed is None else frozenset(allowed),
            admin_groups=admin_groups,
            groups_claim=environ.get("KUBELAB_OIDC_GROUPS_CLAIM") or "groups",
            username_claim=environ.get("KUBELAB_OIDC_USERNAME_CLAIM") or "preferred_username",
        )


def public_url_from(environ: Mapping[str, str]) -> str:
    """The hub's public URL from ``KUBELAB_PUBLIC_URL`` (default ``http://127.0.0.1:8000``).

    Raises:
        HubConfigError: It is not an http(s) URL with a host.
    """
    url = (environ.get("KUBELAB_PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HubConfigError(f"KUBELAB_PUBLIC_URL={url}: must be an http(s) URL such as http://127.0.0.1:8000")
    return url


@dataclass(frozen=True)
class OidcEndpoints:
    """The endpoints an issuer publishes in its discovery document."""

    authorization: str
    token: str
    userinfo: str
    end_session: str | None = None


def parse_discovery(issuer: str, document: Mapping[str, Any]) -> OidcEndpoints:
    """Check an issuer's discovery document and pick the endpoints the hub uses.

    Raises:
        HubConfigError: The document is for another issuer or lacks a required endpoint.
    """
    if document.get("issuer", "").rstrip("/") != issuer:
        raise HubConfigError(
            f"KUBELAB_OIDC_ISSUER={issuer}: the discovery document names issuer {document.get('issuer')!r}; "
            "set KUBELAB_OIDC_ISSUER to exactly that URL"
        )
    missing = [k for k in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint") if not document.get(k)]
    if missing:
        raise HubConfigError(f"KUBELAB_OIDC_ISSUER={issuer}: the discovery document lacks {', '.join(missing)}")
    return OidcEndpoints(
        authorization=document["authorization_endpoint"],
        token=document["token_endpoint"],
        userinfo=document["userinfo_endpoint"],
        end_session=document.get("end_session_endpoint"),
    )


def discover_oidc(issuer: str, timeout: float = 5.0, attempts: int = 3) -> OidcEndpoints:
    """Fetch ``{issuer}/.well-known/openid-configuration`` and return its endpoints.

    It retries a few times with a short backoff, since a provider started together with the
    hub may need a moment, then gives up: an unreachable issuer must stop the hub, not leave
    it up with a sign-in button that cannot work.

    Args:
        issuer: The issuer URL, without a trailing slash.
        timeout: Seconds per attempt.
        attempts: How many attempts before giving up.

    Raises:
        HubConfigError: The issuer cannot be reached, answers with an error, or the document is invalid.
    """
    url = f"{issuer}/.well-known/openid-configuration"
    reason = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(0.5 * 2**attempt)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (scheme checked in from_env)
                document = json.loads(response.read())
            break
        except urllib.error.HTTPError as e:
            # A definite answer from the server: retrying will not change it.
            raise HubConfigError(f"KUBELAB_OIDC_ISSUER={issuer}: {url} answered HTTP {e.code}") from e
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            reason = str(getattr(e, "reason", e))
        except json.JSONDecodeError as e:
            raise HubConfigError(f"KUBELAB_OIDC_ISSUER={issuer}: {url} is not JSON") from e
    else:
        raise HubConfigError(f"KUBELAB_OIDC_ISSUER={issuer}: cannot reach the OIDC issuer ({reason}) after {attempts} attempts")
    if not isinstance(document, Mapping):
        raise HubConfigError(f"KUBELAB_OIDC_ISSUER={issuer}: {url} is not a JSON object")
    return parse_discovery(issuer, document)


def logout_url(endpoints: OidcEndpoints, client_id: str, public_url: str) -> str | None:
    """Where the hub sends the browser after its own logout, to end the provider's session too.

    Without this, "Sign in" right after "Logout" would sign the same user in silently.
    """
    if not endpoints.end_session:
        return None
    query = urllib.parse.urlencode({"client_id": client_id, "post_logout_redirect_uri": f"{public_url}/hub/login"})
    return f"{endpoints.end_session}?{query}"


def set_secret_source(section: Config, source: SecretSource) -> None:
    """Point an authenticator's config section at the secret's file or variable."""
    if source.file:
        section.client_secret_file = source.file
    else:
        section.client_secret_env_var = source.env_var


def configure_oidc(c: Config, settings: OidcSettings, endpoints: OidcEndpoints, login_service: str) -> None:
    """Wire GenericOAuthenticator with group management.

    Args:
        c: The hub's traitlets config.
        settings: From :meth:`OidcSettings.from_env`.
        endpoints: From :func:`discover_oidc`.
        login_service: Shown on the button: "Sign in with <login_service>".
    """
    c.JupyterHub.authenticator_class = KubelabOIDCAuthenticator
    a = c.KubelabOIDCAuthenticator
    a.login_service = login_service
    a.client_id = settings.client_id
    set_secret_source(a, settings.secret)
    a.oauth_callback_url = f"{settings.public_url}/hub/oauth_callback"
    a.authorize_url = endpoints.authorization
    a.token_url = endpoints.token
    a.userdata_url = endpoints.userinfo
    a.scope = list(OIDC_SCOPES)
    a.username_claim = settings.username_claim
    a.manage_groups = True
    a.auth_state_groups_key = f"oauth_user.{settings.groups_claim}"
    a.admin_groups = set(settings.admin_groups)
    if settings.allowed_groups is None:
        a.allow_all = True
    else:
        a.allowed_groups = set(settings.allowed_groups)
    # Stay on the hub's login page (with the GPU status) instead of bouncing straight to the provider.
    a.auto_login = False
    end_session = logout_url(endpoints, settings.client_id, settings.public_url)
    if end_session:
        a.logout_redirect_url = end_session


@dataclass(frozen=True)
class GitHubSettings:
    """What GitHubOAuthenticator needs, read from the environment.

    Attributes:
        client_id: The GitHub OAuth app's client id.
        secret: Where its secret is read from (never the value).
        public_url: The hub's public URL.
        allowed_organizations: ``org`` or ``org:team`` entries whose members may sign in.
        admin_groups: Groups (``org:team``) whose members are admins.
    """

    client_id: str
    secret: SecretSource
    public_url: str
    allowed_organizations: frozenset[str]
    admin_groups: frozenset[str]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> GitHubSettings:
        """Read and check the GitHub settings.

        Raises:
            HubConfigError: The client id, the secret or the organisations are missing.
        """
        client_id = environ.get("KUBELAB_GITHUB_CLIENT_ID")
        if not client_id:
            raise HubConfigError("KUBELAB_AUTH=github needs KUBELAB_GITHUB_CLIENT_ID (the GitHub OAuth app's client id)")
        orgs = frozenset(split_list(environ.get("KUBELAB_GITHUB_ORGS")))
        if not orgs:
            raise HubConfigError("KUBELAB_AUTH=github needs KUBELAB_GITHUB_ORGS, e.g. 'mylab' or 'mylab:gpu-users'")
        return cls(
            client_id=client_id,
            secret=find_secret(environ, "KUBELAB_GITHUB_CLIENT_SECRET", "KUBELAB_GITHUB_CLIENT_SECRET_FILE"),
            public_url=public_url_from(environ),
            allowed_organizations=orgs,
            admin_groups=frozenset(split_list(environ.get("KUBELAB_ADMIN_GROUPS"))),
        )


def github_team_groups(auth_state: Mapping[str, Any]) -> list[str]:
    """Turn the GitHub teams in ``auth_state`` into JupyterHub group names ``org:team``.

    The organisation is kept in the name so that two organisations' ``gpu-users`` teams stay
    apart; the catalogue's ``groups`` then name teams as ``mylab:gpu-users``.
    """
    groups = []
    for team in auth_state.get("teams") or []:
        org = (team.get("organization") or {}).get("login")
        slug = team.get("slug")
        if org and slug:
            groups.append(f"{org}:{slug}")
    return sorted(set(groups))


def configure_github(c: Config, settings: GitHubSettings) -> None:
    """Wire GitHubOAuthenticator: org/team membership for access, teams as groups."""
    c.JupyterHub.authenticator_class = KubelabGitHubAuthenticator
    a = c.KubelabGitHubAuthenticator
    a.login_service = "GitHub"
    a.client_id = settings.client_id
    set_secret_source(a, settings.secret)
    a.oauth_callback_url = f"{settings.public_url}/hub/oauth_callback"
    a.allowed_organizations = set(settings.allowed_organizations)
    # read:org lets the hub see private team membership, which groups are built from.
    a.scope = ["read:user", "read:org"]
    a.populate_teams_in_auth_state = True
    a.manage_groups = True
    a.auth_state_groups_key = github_team_groups
    if settings.admin_groups:
        a.admin_groups = set(settings.admin_groups)


def configure_auth(c: Config, environ: Mapping[str, str], catalogue: Catalogue) -> str:
    """Configure the authenticator named by ``KUBELAB_AUTH`` (``oidc`` by default).

    Returns:
        A short description for the start-up log, without secrets.

    Raises:
        HubConfigError: Unknown mode, or a missing/invalid setting, or an unreachable issuer.
    """
    mode = (environ.get("KUBELAB_AUTH") or "oidc").lower()
    if mode == "oidc":
        settings = OidcSettings.from_env(environ, catalogue)
        timeout = float(environ.get("KUBELAB_OIDC_DISCOVERY_TIMEOUT") or 5)
        endpoints = discover_oidc(settings.issuer, timeout=timeout)
        configure_oidc(c, settings, endpoints, catalogue.login_service)
        allowed = "everyone" if settings.allowed_groups is None else ", ".join(sorted(settings.allowed_groups))
        return f"OIDC issuer {settings.issuer}, client {settings.client_id}, allowed groups: {allowed}"
    if mode == "github":
        gh = GitHubSettings.from_env(environ)
        configure_github(c, gh)
        return f"GitHub, organisations: {', '.join(sorted(gh.allowed_organizations))}"
    raise HubConfigError(f"KUBELAB_AUTH={mode}: unknown mode; allowed: {', '.join(AUTH_MODES)}")


__all__ = [
    "HubConfigError",
    "OidcSettings",
    "OidcEndpoints",
    "GitHubSettings",
    "configure_auth",
    "configure_oidc",
    "configure_github",
    "discover_oidc",
    "parse_discovery",
    "github_team_groups",
    "find_secret",
    "KubelabOIDCAuthenticator",
    "KubelabGitHubAuthenticator",
    "split_list",
]
