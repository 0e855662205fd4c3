"""Names resolve lazily to classes; unknown names and missing extras are explained."""

import sys

import pytest

from embodied import registry


class Thing:
    def __init__(self, size=1, colour="red"):
        self.size, self.colour = size, colour


def test_register_make_and_override_defaults():
    registry.register("test/thing-v0", Thing, kind="policy", size=3)
    try:
        t = registry.make("test/thing-v0", colour="blue")
        assert (t.size, t.colour) == (3, "blue")
        assert "test/thing-v0" in registry.names("policy")
        with pytest.raises(ValueError, match="already registered"):
            registry.register("test/thing-v0", "embodied.episode:EpisodeBuffer", kind="policy")
    finally:
        registry.unregister("test/thing-v0")


def test_string_entry_points_import_on_first_make():
    registry.register("test/buffer-v0", "embodied.episode:EpisodeBuffer", kind="robot")
    try:
        from embodied.episode import EpisodeBuffer

        assert isinstance(registry.make("test/buffer-v0"), EpisodeBuffer)
    finally:
        registry.unregister("test/buffer-v0")


def test_unknown_name_suggests_and_points_to_list():
    with pytest.raises(registry.RegistryError, match="embodied list"):
        registry.make("tabletop/pick-v9")


def test_missing_module_names_the_extra():
    registry.register("test/needs-extra-v0", "surely_not_installed_pkg.mod:X", kind="robot", extra="hardware")
    try:
        with pytest.raises(registry.RegistryError, match=r"pip install 'embodied\[hardware\]'"):
            registry.make("test/needs-extra-v0")
    finally:
        registry.unregister("test/needs-extra-v0")


def test_embodied_import_does_not_import_the_other_packages():
    import subprocess

    code = "import embodied, embodied.runner, embodied.cli, sys; print([m for m in ('envs', 'policies', 'hardware') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
