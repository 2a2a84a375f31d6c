"""Images without a registry (localcluster/images.py): the OCI layout archive a real node's
containerd imports, checked for what containerd relies on: the index names the image by its
normalized reference, every digest matches its blob, a host file is root's in the image; the
cache key follows the content of the inputs; a layer keeps owners and leaves out what images
drop."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

import pytest

from localcluster import LocalClusterError
from localcluster.build import missing_system_packages
from localcluster.images import ImageRecipe, ProjectSource, _write_layer, image_archive


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
    first_bytes = first.read_bytes()
    assert image_archive(_recipe(program), tmp_path / "cache") == first  # built once
    program.write_text("two")
    second = image_archive(_recipe(program), tmp_path / "cache")
    assert second != first and not first.exists()  # the older archive of the image is pruned
    # The same inputs give the same bytes (entries sorted, times fixed).
    program.write_text("one")
    assert image_archive(_recipe(program), tmp_path / "again").read_bytes() == first_bytes


def test_a_layer_keeps_owners_and_leaves_out_what_images_drop(tmp_path: Path):
    rootfs = tmp_path / "rootfs"
    for directory in ("dev", "usr/share/doc/pkg", "var/lib/apt/lists", "var/lib/postgresql"):
        (rootfs / directory).mkdir(parents=True)
    (rootfs / "dev" / "null").write_text("")
    (rootfs / "usr/share/doc/pkg/copyright").write_text("")
    (rootfs / "var/lib/apt/lists/bookworm_Packages").write_text("")
    os.chown(rootfs / "var/lib/postgresql", 999, 999)
    (rootfs / "lib").symlink_to("usr/lib")  # kept as a link, not followed
    layer = tmp_path / "layer.tar"
    _write_layer(rootfs, layer)
    with tarfile.open(layer) as content:
        members = {member.name: member for member in content.getmembers()}
    assert sorted(members) == [
        "dev",
        "lib",
        "usr",
        "usr/share",
        "usr/share/doc",
        "var",
        "var/lib",
        "var/lib/apt",
        "var/lib/apt/lists",
        "var/lib/postgresql",
    ]
    assert (members["var/lib/postgresql"].uid, members["var/lib/postgresql"].gid) == (999, 999)
    assert members["lib"].issym() and members["lib"].linkname == "usr/lib"


def test_a_project_in_an_image_is_its_source_not_what_this_machine_made(tmp_path: Path):
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (tmp_path / "pkg" / "code.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "__pycache__" / "code.cpython-311.pyc").write_text("")
    (tmp_path / "pkg" / "chart-0.1.0.tgz").write_text("")
    (tmp_path / "pkg" / ".floe-dependencies").write_text("")
    project = ProjectSource(tmp_path, ("pyproject.toml", "pkg"))
    assert [relative for relative, _ in project.files()] == ["pyproject.toml", "pkg/code.py"]
    recipe = ImageRecipe(name="app", tag="1", pip_projects=(project,))
    before = recipe.digest()
    (tmp_path / "pkg" / "chart-0.1.0.tgz").write_text("rebuilt")
    assert recipe.digest() == before
    (tmp_path / "pkg" / "code.py").write_text("x = 2\n")
    assert recipe.digest() != before
    with pytest.raises(LocalClusterError, match="missing.*build images from a checkout"):
        list(ProjectSource(tmp_path, ("absent",)).files())


def test_a_package_is_missing_when_its_program_or_file_is(tmp_path: Path):
    present = tmp_path / "plugin"
    present.write_text("")
    packages = {"on-path": "sh", "by-path": str(present), "absent": str(tmp_path / "none")}
    assert missing_system_packages(packages) == ["absent"]
