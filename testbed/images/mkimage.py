#!/usr/bin/env python3
"""Write an OCI image archive (oci-layout tarball) that `ctr images import` accepts.

Layers are plain (uncompressed) tar files, applied in order. Extra files can be
added as a generated top layer with --add SRC:DEST[:MODE]. Only the standard
library is used, so this works on a bare Debian host.
"""
import argparse
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import time


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_base(path, blobs_out):
    """Layers (copied into blobs_out) and config of the single image in an OCI archive."""
    with tarfile.open(path) as tar:
        def blob(digest):
            return tar.extractfile("blobs/sha256/" + digest.split(":", 1)[1]).read()
        index = json.loads(tar.extractfile("index.json").read())
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        layers = []
        for l in manifest["layers"]:
            dst = os.path.join(blobs_out, l["digest"].split(":", 1)[1])
            with tar.extractfile("blobs/sha256/" + l["digest"].split(":", 1)[1]) as src, open(dst, "wb") as out:
                shutil.copyfileobj(src, out)
            layers.append(l)
    return layers, config


def add_layer_from_files(items, symlinks, dirs, out_path, trees=()):
    """items: list of (src, dest, mode); symlinks: list of (target, dest); dirs: (dest, mode, uid);
    trees: (src_dir, dest_dir, uid) copied recursively."""
    with tarfile.open(out_path, "w", format=tarfile.PAX_FORMAT) as tar:
        seen = set()

        def ensure_parents(dest):
            parts = dest.strip("/").split("/")[:-1]
            cur = ""
            for p in parts:
                cur = f"{cur}/{p}" if cur else p
                if cur in seen:
                    continue
                seen.add(cur)
                ti = tarfile.TarInfo(cur)
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                ti.mtime = 0
                tar.addfile(ti)

        for dest, mode, uid in dirs:
            ensure_parents(dest + "/x")
            name = dest.strip("/")
            if name in seen:
                continue
            seen.add(name)
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.DIRTYPE
            ti.mode = mode
            ti.uid = ti.gid = uid
            ti.mtime = 0
            tar.addfile(ti)
        for src, dest, mode in items:
            ensure_parents(dest)
            ti = tarfile.TarInfo(dest.strip("/"))
            ti.size = os.path.getsize(src)
            ti.mode = mode if mode is not None else (os.stat(src).st_mode & 0o7777)
            ti.mtime = 0
            with open(src, "rb") as f:
                tar.addfile(ti, f)
        for src_dir, dest_dir, uid in trees:
            ensure_parents(dest_dir.rstrip("/") + "/x")
            for root, dnames, fnames in os.walk(src_dir):
                dnames[:] = sorted(d for d in dnames if d not in ("__pycache__", ".git", ".pytest_cache"))
                rel = os.path.relpath(root, src_dir)
                base = dest_dir.strip("/") if rel == "." else dest_dir.strip("/") + "/" + rel
                if base not in seen:
                    seen.add(base)
                    ti = tarfile.TarInfo(base)
                    ti.type = tarfile.DIRTYPE
                    ti.mode = 0o755
                    ti.uid = ti.gid = uid
                    ti.mtime = 0
                    tar.addfile(ti)
                for fn in sorted(fnames):
                    full = os.path.join(root, fn)
                    if os.path.islink(full) or not os.path.isfile(full):
                        continue
                    ti = tarfile.TarInfo(base + "/" + fn)
                    ti.size = os.path.getsize(full)
                    ti.mode = os.stat(full).st_mode & 0o755 | 0o444
                    ti.uid = ti.gid = uid
                    ti.mtime = 0
                    with open(full, "rb") as f:
                        tar.addfile(ti, f)
        for target, dest in symlinks:
            ensure_parents(dest)
            ti = tarfile.TarInfo(dest.strip("/"))
            ti.type = tarfile.SYMTYPE
            ti.linkname = target
            ti.mtime = 0
            tar.addfile(ti)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", required=True, help="full image reference, e.g. docker.io/library/redis:7.0")
    ap.add_argument("--out", required=True)
    ap.add_argument("--base", default=None, help="OCI archive whose layers and config this image extends")
    ap.add_argument("--add-dir", action="append", default=[], help="SRCDIR:DESTDIR[:UID] recursively into the top layer")
    ap.add_argument("--layer", action="append", default=[], help="tar file used as a layer (in order)")
    ap.add_argument("--add", action="append", default=[], help="SRC:DEST[:OCTALMODE] into a top layer")
    ap.add_argument("--symlink", action="append", default=[], help="TARGET:DEST into the top layer")
    ap.add_argument("--dir", action="append", default=[], help="DEST[:OCTALMODE[:UID]] into the top layer")
    ap.add_argument("--entrypoint", default=None, help="JSON list")
    ap.add_argument("--cmd", default=None, help="JSON list")
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--port", action="append", default=[], help="e.g. 5432/tcp")
    ap.add_argument("--volume", action="append", default=[])
    ap.add_argument("--user", default="")
    ap.add_argument("--workdir", default="")
    ap.add_argument("--stop-signal", default="")
    ap.add_argument("--label", action="append", default=[])
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="mkimage-", dir=os.path.dirname(os.path.abspath(args.out)))
    try:
        blobs = os.path.join(work, "blobs", "sha256")
        os.makedirs(blobs)
        base_layers, base_cfg = ([], {})
        if args.base:
            base_layers, base_config = read_base(args.base, blobs)
            base_cfg = base_config.get("config", {})
            base_diff_ids = base_config["rootfs"]["diff_ids"]
        layers = list(args.layer)
        if args.add or args.symlink or args.dir or args.add_dir:
            items = []
            for spec in args.add:
                parts = spec.split(":")
                mode = int(parts[2], 8) if len(parts) > 2 else None
                items.append((parts[0], parts[1], mode))
            links = [tuple(s.split(":", 1)) for s in args.symlink]
            dirs = []
            for spec in args.dir:
                parts = spec.split(":")
                dirs.append((parts[0], int(parts[1], 8) if len(parts) > 1 else 0o755,
                             int(parts[2]) if len(parts) > 2 else 0))
            top = os.path.join(work, "top.tar")
            trees = []
            for spec in args.add_dir:
                parts = spec.split(":")
                trees.append((parts[0], parts[1], int(parts[2]) if len(parts) > 2 else 0))
            add_layer_from_files(items, links, dirs, top, trees)
            layers.append(top)

        layer_descs, diff_ids = list(base_layers), (list(base_diff_ids) if args.base else [])
        for lp in layers:
            digest = sha256_file(lp)
            size = os.path.getsize(lp)
            dst = os.path.join(blobs, digest)
            if not os.path.exists(dst):
                try:
                    os.link(lp, dst)
                except OSError:
                    shutil.copyfile(lp, dst)
            layer_descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                "digest": "sha256:" + digest, "size": size})
            diff_ids.append("sha256:" + digest)

        cfg = dict(base_cfg)
        if args.entrypoint is not None:
            cfg["Entrypoint"] = json.loads(args.entrypoint)
        if args.cmd is not None:
            cfg["Cmd"] = json.loads(args.cmd)
        env = list(cfg.get("Env") or [])
        for e in args.env or []:
            env = [x for x in env if x.split("=", 1)[0] != e.split("=", 1)[0]] + [e]
        if not any(e.startswith("PATH=") for e in env):
            env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + env
        cfg["Env"] = env
        if args.port:
            cfg["ExposedPorts"] = {**cfg.get("ExposedPorts", {}), **{p: {} for p in args.port}}
        if args.volume:
            cfg["Volumes"] = {v: {} for v in args.volume}
        if args.user:
            cfg["User"] = args.user
        if args.workdir:
            cfg["WorkingDir"] = args.workdir
        if args.stop_signal:
            cfg["StopSignal"] = args.stop_signal
        if args.label:
            cfg["Labels"] = dict(l.split("=", 1) for l in args.label)
        config = {
            "created": "1970-01-01T00:00:00Z",
            "architecture": "amd64",
            "os": "linux",
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "testbed/images/mkimage.py"}],
        }

        def put_json(obj):
            data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
            d = hashlib.sha256(data).hexdigest()
            with open(os.path.join(blobs, d), "wb") as f:
                f.write(data)
            return d, len(data)

        cd, cs = put_json(config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": "sha256:" + cd, "size": cs},
            "layers": layer_descs,
        }
        md, ms = put_json(manifest)
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:" + md, "size": ms,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"io.containerd.image.name": args.ref,
                                "org.opencontainers.image.ref.name": args.ref.rsplit(":", 1)[-1]},
            }],
        }
        with open(os.path.join(work, "index.json"), "w") as f:
            json.dump(index, f)
        with open(os.path.join(work, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)

        tmp_out = args.out + ".tmp"
        with tarfile.open(tmp_out, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in ("oci-layout", "index.json"):
                tar.add(os.path.join(work, name), arcname=name)
            tar.add(os.path.join(work, "blobs"), arcname="blobs")
        os.replace(tmp_out, args.out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
