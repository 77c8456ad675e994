"""The platform wiring: named servers, shared lists, templates, jobs scope, the whole configure()."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from traitlets.config import Config

from kubelab.core.catalogue import EXAMPLE_PATH, load_catalogue, parse_catalogue
from kubelab.core.naming import JOBS_SCOPE
from kubelab.hub_config import wiring

CATALOGUE = load_catalogue(EXAMPLE_PATH)
EXAMPLE = yaml.safe_load(EXAMPLE_PATH.read_text())


def catalogue_with(**defaults: Any) -> Any:
    doc = copy.deepcopy(EXAMPLE)
    doc["defaults"].update(defaults)
    return parse_catalogue(doc, "test.yaml")


@pytest.mark.parametrize(
    ("limit", "allowed", "hub_limit"),
    [(3, True, 3), (1, True, 1), (0, False, None)],
    ids=["three", "one", "zero-turns-them-off"],
)
def test_named_servers(limit: int, allowed: bool, hub_limit: int | None) -> None:
    c = Config()
    wiring.configure_named_servers(c, catalogue_with(maxNamedServers=limit))
    assert c.JupyterHub.allow_named_servers is allowed
    # JupyterHub reads 0 as unlimited, so a 0 in the catalogue must never reach the hub.
    assert ("named_server_limit_per_user" in c.JupyterHub) is (hub_limit is not None)
    if hub_limit is not None:
        assert c.JupyterHub.named_server_limit_per_user == hub_limit


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda c: None, []),
        (lambda c: c.JupyterHub.services.append({"name": "a"}), [{"name": "a"}]),
        (lambda c: setattr(c.JupyterHub, "services", [{"name": "b"}]), [{"name": "b"}]),
    ],
    ids=["unset", "lazy-append", "plain-list"],
)
def test_init_shared_lists(setup: Any, expected: list[dict[str, str]]) -> None:
    c = Config()
    setup(c)
    wiring.init_shared_lists(c)
    assert c.JupyterHub.services == expected
    # Both ways other parts add to a shared list work afterwards, in any order.
    c.JupyterHub.extra_handlers.extend([("/x", object)])
    assert len(list(c.JupyterHub.extra_handlers)) == 1
    for name in wiring.SHARED_LISTS:
        assert isinstance(c.JupyterHub[name], list)


def test_configure_platform_hands_one_platform_to_spawner_and_jobs() -> None:
    c = Config()
    c.KubelabOIDCAuthenticator.admin_groups = {"admins", "lab-heads"}
    platform = wiring.configure_platform(c, CATALOGUE, admin_groups=wiring.admin_groups_of(c))
    assert c.LabSpawner.platform is platform
    jobs_routes = [h for h in c.JupyterHub.extra_handlers if h[0].startswith("/api/kubelab/jobs")]
    availability_routes = [h for h in c.JupyterHub.extra_handlers if h[0].startswith("/api/kubelab/availability")]
    assert jobs_routes and all(h[2]["service"].platform is platform for h in jobs_routes)
    assert availability_routes and all(h[2]["platform"] is platform for h in availability_routes)
    # The service is a platform component: it starts with the hub, not on the first request.
    # So is the GPU accounting (issue 15), attached to the cluster cache before its first LIST.
    assert [component.name for component in platform._components] == ["jobs", "sweeps", "gpu-accounting"]
    assert JOBS_SCOPE in c.JupyterHub.custom_scopes
    # Members of the provider's admin groups see every user's jobs.
    (admin_role,) = [r for r in c.JupyterHub.load_roles if "custom:kubelab:jobs-admin" in r["scopes"]]
    assert admin_role["groups"] == ["admins", "lab-heads"]
    # ... and may open the admin page and the GPU-hour API.
    (kubelab_admin,) = [r for r in c.JupyterHub.load_roles if r["scopes"] == ["custom:kubelab:admin"]]
    assert kubelab_admin["groups"] == ["admins", "lab-heads"]
    assert [h[0] for h in c.JupyterHub.extra_handlers if "admin" in h[0]] == [
        "/kubelab/admin/?", "/kubelab/admin/stop", r"/api/kubelab/admin/usage\.csv", "/api/kubelab/admin/usage"]


def test_templates_configured() -> None:
    c = Config()
    c.JupyterHub.template_vars = {"keep": 1}
    wiring.configure_templates(c, CATALOGUE)
    assert c.JupyterHub.template_paths[0] == str(wiring.TEMPLATES_DIR)
    assert c.JupyterHub.template_vars["keep"] == 1
    assert c.JupyterHub.template_vars["kubelab_platform_name"] == "kubelab"
    assert c.JupyterHub.template_vars["kubelab_availability_path"] == "api/kubelab/availability/summary"


def render(name: str, **context: Any) -> str:
    """Render a kubelab template the way JupyterHub loads them (ours first, stock as ``templates/``)."""
    from jupyterhub._data import DATA_FILES_PATH

    stock = Path(DATA_FILES_PATH) / "templates"
    loader = jinja2.ChoiceLoader(
        [
            jinja2.FileSystemLoader([str(wiring.TEMPLATES_DIR), str(stock)]),
            jinja2.PrefixLoader({"templates": jinja2.FileSystemLoader([str(stock)])}),
        ]
    )
    env = jinja2.Environment(loader=loader, autoescape=True)
    defaults = {"static_url": lambda path, **_: f"/hub/static/{path}", "base_url": "/hub/", "logo_url": "", "xsrf": "x"}
    return env.get_template(name).render(**defaults, **context)


@pytest.mark.parametrize(
    ("context", "present", "absent"),
    [
        (
            {"kubelab_platform_name": "GPU Lab", "login_service": "Uni SSO", "authenticator_login_url": "/hub/oauth_login"},
            ['<title>GPU Lab</title>', 'role="button"', "Sign in with Uni SSO", 'href="/hub/oauth_login"',
             'data-url="/hub/api/kubelab/availability/summary"'],
            ["<form"],
        ),
        (
            {"kubelab_platform_name": "<b>x</b>", "login_service": "S", "authenticator_login_url": "/l",
             "login_error": "Sign-in failed"},
            ["&lt;b&gt;x&lt;/b&gt;", 'role="alert">Sign-in failed'],
            ["<b>x</b>"],
        ),
    ],
    ids=["branding", "escaped-and-error"],
)
def test_login_template(context: dict[str, Any], present: list[str], absent: list[str]) -> None:
    html = render("login.html", kubelab_availability_path="api/kubelab/availability/summary", **context)
    for text in present:
        assert text in html
    for text in absent:
        assert text not in html


def test_configure_end_to_end(tmp_path: Path) -> None:
    """configure() against a real (loopback) discovery endpoint, reading nothing but env."""
    import http.server
    import json
    import threading

    class Discovery(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            body = {"issuer": base, "authorization_endpoint": f"{base}/auth", "token_endpoint": f"{base}/token",
                    "userinfo_endpoint": f"{base}/me"}
            self.send_response(200)
            self.end_headers()
            self.wfile.write(json.dumps(body).encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Discovery)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = tmp_path / "secret"
    secret.write_text("top-secret-value\n")
    try:
        c = Config()
        summary = wiring.configure(c, {
            "KUBELAB_OIDC_ISSUER": f"http://127.0.0.1:{server.server_address[1]}",
            "KUBELAB_OIDC_CLIENT_SECRET_FILE": str(secret),
        })
    finally:
        server.shutdown()
        server.server_close()
    assert summary[0].startswith(f"catalogue {EXAMPLE_PATH}: 3 profiles, 1 GPU classes")
    assert c.JupyterHub.spawner_class.__name__ == "LabSpawner"
    assert [s["name"] for s in c.JupyterHub.services] == ["idle-culler"]
    assert c.KubelabOIDCAuthenticator.manage_groups is True
    assert "top-secret-value" not in repr(c)
    assert c.JupyterHub.named_server_limit_per_user == 3
