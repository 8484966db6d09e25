#!/usr/bin/env python3
"""Give an OCI archive's image a second name, its reference by digest.

    oci_archive_digest_name.py ARCHIVE REPOSITORY

buildah writes one manifest in index.json, named by its tag
(org.opencontainers.image.ref.name = ghcr.io/x/toolbox:0.1.0). A container
runtime importing the archive (k3s from its agent images folder, ctr
import) records that name only, so a pod whose image is pinned as
name:tag@sha256:... does not find it and tries a registry. A second entry
for the same manifest, named REPOSITORY@sha256:<its digest>
(io.containerd.image.name), is recorded as the image's digest reference,
which is what the runtime looks up for a pinned image. The archive is
rewritten next to itself and moved into place; run twice, it changes
nothing. Prints the manifest digest."""
import io
import json
import os
import sys
import tarfile
import tempfile

NAME = "io.containerd.image.name"


def main(archive, repository):
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
    manifests = index["manifests"]
    digest = manifests[0]["digest"]
    by_digest = f"{repository}@{digest}"
    if any(m.get("annotations", {}).get(NAME) == by_digest for m in manifests):
        print(digest)
        return
    entry = {k: v for k, v in manifests[0].items() if k != "annotations"}
    entry["annotations"] = {NAME: by_digest}
    index["manifests"] = manifests + [entry]
    data = json.dumps(index, separators=(",", ":")).encode()
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(archive)), suffix=".tmp")
    os.close(fd)
    try:
        with tarfile.open(archive) as src, tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as dst:
            for member in src:
                if member.name == "index.json":
                    member.size = len(data)
                    dst.addfile(member, io.BytesIO(data))
                else:
                    dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        os.chmod(tmp, os.stat(archive).st_mode & 0o777)
        os.replace(tmp, archive)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(digest)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
