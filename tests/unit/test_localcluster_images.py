"""Images without a registry (localcluster/images.py): the OCI layout archive a real node's
containerd imports, checked for what containerd relies on: the index names the image by its
normalized reference, every digest matches its blob, the layer's files are root's; and the
cache key follows the content of the inputs."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

from localcluster.build import missing_system_packages
from localcluster.images import ImageRecipe, image_archive


def _recipe(program: Path) -> ImageRecipe:
    return ImageRecipe(name="tool", tag="1", files=(("/bin/tool", program),), cmd=("/bin/tool",))


def _blobs(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as layout:
        return {
            member.name: layout.extractfile(member).read()  # type: ignore[union-attr]
            for member in layout.getmembers()
            if member.isfile()
        }


def test_the_layout_names_the_image_and_every_digest_matches_its_blob(tmp_path: Path):
    program = tmp_path / "tool"
    program.write_text("#!/bin/sh\necho hi\n")
    program.chmod(0o755)
    files = _blobs(image_archive(_recipe(program), tmp_path / "cache"))
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, content in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(content).hexdigest() == name.removeprefix("blobs/sha256/")
    [entry] = json.loads(files["index.json"])["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "docker.io/local/tool:1"
    manifest = json.loads(files["blobs/sha256/" + entry["digest"].removeprefix("sha256:")])
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"][7:]])
    assert config["config"]["Cmd"] == ["/bin/tool"]
    [layer] = manifest["layers"]
    assert config["rootfs"]["diff_ids"] == [layer["digest"]]  # uncompressed: the same digest
    layer_file = tmp_path / "layer.tar"
    layer_file.write_bytes(files["blobs/sha256/" + layer["digest"][7:]])
    with tarfile.open(layer_file) as content:
        tool = content.getmember("bin/tool")
        assert (tool.uid, tool.gid, tool.mode & 0o777) == (0, 0, 0o755)
        assert content.extractfile(tool).read() == b"#!/bin/sh\necho hi\n"  # type: ignore[union-attr]


def test_the_cache_follows_the_content_of_the_inputs(tmp_path: Path):
    program = tmp_path / "tool"
    program.write_text("one")
    first = image_archive(_recipe(program), tmp_path / "cache")
    assert image_archive(_recipe(program), tmp_path / "cache") == first  # built once
    program.write_text("two")
    second = image_archive(_recipe(program), tmp_path / "cache")
    assert second != first and first.exists()
    # The same inputs give the same bytes (entries sorted, times and owners fixed).
    (tmp_path / "again").mkdir()
    program.write_text("one")
    assert image_archive(_recipe(program), tmp_path / "again").read_bytes() == first.read_bytes()


def test_a_package_is_missing_when_its_program_or_file_is(tmp_path: Path):
    present = tmp_path / "plugin"
    present.write_text("")
    packages = {"on-path": "sh", "by-path": str(present), "absent": str(tmp_path / "none")}
    assert missing_system_packages(packages) == ["absent"]
