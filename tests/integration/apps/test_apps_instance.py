"""instance: its own database and volume, and its name everywhere."""
import hashlib
import os

from apps_support import query


def test_names_itself_in_responses_logs_and_metrics(stack):
    instance1 = stack.instances["instance1"]
    r = instance1.get("/")
    assert r.status_code == 200
    assert r.headers["X-Instance"] == "instance1"
    assert "Instance <strong>instance1</strong>" in r.text
    assert "Welcome to instance1" in r.text  # seeded into its own database
    assert all(e["instance"] == "instance1" for e in instance1.log_entries())
    assert 'instance="instance1"' in instance1.get("/metrics").text
    assert stack.instances["instance2"].get("/healthz").json()["instance"] == "instance2"


def test_pages_live_in_the_instance_database_only(stack, user_token):
    instance1, instance2 = stack.instances["instance1"], stack.instances["instance2"]
    auth = {"Authorization": f"Bearer {user_token}"}
    r = instance1.put("/api/pages/about", json={"title": "About one", "body": "Only on instance1."},
                      headers=auth)
    assert r.status_code == 201, r.text
    assert instance1.put("/api/pages/about", json={"title": "About one", "body": "Edited."},
                         headers=auth).status_code == 200
    assert query(stack.pg, instance1.database, "SELECT body FROM pages WHERE slug = 'about'") == [("Edited.",)]
    assert query(stack.pg, instance2.database, "SELECT count(*) FROM pages WHERE slug = 'about'") == [(0,)]
    assert "Edited." in instance1.get("/pages/about").text
    assert instance2.get("/pages/about").status_code == 404


def test_writes_need_a_token_and_valid_names(stack, user_token):
    instance1 = stack.instances["instance1"]
    page = {"title": "t", "body": "b"}
    assert instance1.put("/api/pages/nope", json=page).status_code == 401
    assert instance1.put("/api/pages/nope", json=page,
                         headers={"Authorization": "Bearer forged.token.here"}).status_code == 401
    auth = {"Authorization": f"Bearer {user_token}"}
    assert instance1.put("/api/pages/Bad_Slug", json=page, headers=auth).status_code == 400
    assert instance1.put("/api/pages/ok", json={"title": ""}, headers=auth).status_code == 400
    # Encoded path traversal never reaches the volume.
    assert instance1.put("/api/assets/%2e%2e%2fescape", data=b"x", headers=auth).status_code == 400
    assert not os.path.exists(os.path.join(stack.instance_env["instance1"]["FILES_DIR"], "escape"))


def test_assets_are_written_to_the_instance_volume(stack, user_token):
    instance1, instance2 = stack.instances["instance1"], stack.instances["instance2"]
    data = os.urandom(200_000)
    r = instance1.put("/api/assets/logo.png", data=data,
                      headers={"Authorization": f"Bearer {user_token}", "Content-Type": "image/png"})
    assert r.status_code == 201, r.text
    assert r.json()["sha256"] == hashlib.sha256(data).hexdigest()
    on_disk = os.path.join(stack.instance_env["instance1"]["FILES_DIR"], "assets", "logo.png")
    with open(on_disk, "rb") as f:
        assert f.read() == data
    got = instance1.get("/assets/logo.png")
    assert got.status_code == 200 and got.content == data
    assert got.headers["Content-Type"] == "image/png"
    assert query(stack.pg, instance1.database, "SELECT size_bytes FROM assets WHERE name = 'logo.png'") == [(200_000,)]
    assert instance2.get("/assets/logo.png").status_code == 404
    assert not os.path.exists(os.path.join(stack.instance_env["instance2"]["FILES_DIR"], "assets", "logo.png"))
