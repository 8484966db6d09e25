import pytest

from static_support import ROOT, run_ansible


@pytest.fixture(scope="session")
def rendered(tmp_path_factory):
    """Render every manifest of the VM inventory once for the session."""
    out = tmp_path_factory.mktemp("manifests")
    run_ansible("ansible-playbook", "playbooks/render.yml", "-i", "inventories/vm",
                "-e", f"platform_render_dir={out}")
    return out


__all__ = ["ROOT", "rendered"]
