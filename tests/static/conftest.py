import pytest

from static_support import ROOT, run_ansible


@pytest.fixture(scope="session")
def rendered_run(tmp_path_factory):
    """Render every manifest of the VM inventory once for the session: the
    output folder and the finished run (its output holds the run's warnings)."""
    out = tmp_path_factory.mktemp("manifests")
    proc = run_ansible("ansible-playbook", "playbooks/render.yml", "-i", "inventories/vm",
                       "-e", f"platform_render_dir={out}")
    return out, proc


@pytest.fixture(scope="session")
def rendered(rendered_run):
    """The folder of the session's render of the VM inventory."""
    return rendered_run[0]


__all__ = ["ROOT", "rendered", "rendered_run"]
