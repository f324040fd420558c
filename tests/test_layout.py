"""The package as it ships: every room in the layering contract, and a wheel that runs."""

from __future__ import annotations

import ast
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from questlog.services.cli.roster import _ROSTER

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("events", "projections", "services", "gateway")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _layers() -> list[str]:
    (layers,) = [c["layers"] for c in _pyproject()["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    return [name.strip() for layer in layers for name in layer.replace("|", ":").split(":")]


def test_every_module_of_services_stands_in_a_layer() -> None:
    """A module added flat to services/ must be placed in the contract, or the contract would not check it."""
    named = set(_layers())
    for entry in sorted((ROOT / "services").iterdir()):
        if entry.name.startswith(("_", ".")) or not (entry.suffix == ".py" or (entry / "__init__.py").exists()):
            continue
        module = f"questlog.services.{entry.stem}"
        assert module in named, f"{module} is in no layer of pyproject's import contract"
    assert {f"questlog.{p}" for p in ("events", "projections", "gateway")} <= named


def _imports_within(package: Path) -> dict[str, set[str]]:
    """Module -> the sibling modules it imports, counting imports made only for type checking."""
    names = {p.stem for p in package.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.module is None:  # from . import jsonrpc
                found |= {a.name for a in node.names} & names
            elif node.level or node.module.startswith("questlog.gateway."):
                found |= {node.module.rsplit(".", 1)[-1]} & names
        graph[path.stem] = found - {path.stem}
    return graph


def test_the_gateway_has_no_import_circle() -> None:
    graph = _imports_within(ROOT / "gateway")
    assert graph["session"] >= {"routing", "transport"} and "app" not in set().union(*graph.values()) - {"app"}

    def visit(module: str, path: tuple[str, ...]) -> None:
        for imported in graph[module]:
            assert imported not in path, f"import circle: {' -> '.join((*path, module, imported))}"
            visit(imported, (*path, module))

    for module in graph:
        visit(module, ())


def test_every_package_is_installed() -> None:
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    on_disk = {
        "questlog." + ".".join(init.parent.relative_to(ROOT).parts)
        for top in PACKAGES
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert on_disk == listed


@pytest.mark.slow
def test_the_wheel_holds_every_module_and_runs_every_service(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", dist, ROOT],
        check=True,
    )
    (wheel,) = dist.glob("questlog-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    for top in PACKAGES:
        for source in (ROOT / top).rglob("*.py"):
            assert "questlog/" + str(source.relative_to(ROOT)) in shipped
    assert "questlog/services/rules/catalog.toml" in shipped
    assert "questlog/gateway/static/index.html" in shipped

    # A bare venv with the wheel alone; the dependencies come from the test's
    # own environment through a plain path line, without its editable finder.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--quiet", "--no-deps", wheel],
        check=True,
    )
    site = Path(
        subprocess.run(
            [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")

    listed = subprocess.run([venv / "bin" / "questlog", "services"], check=True, capture_output=True, text=True)
    assert listed.stdout.split() == list(_ROSTER)
    # what `questlog run <service>` imports by name, taken from the wheel
    program = "\n".join(
        [
            "import importlib",
            f"for target in {list(_ROSTER.values())!r}:",
            "    module, function = target.split(':')",
            "    getattr(importlib.import_module(module), function)",
            "    print(importlib.import_module(module).__file__)",
        ]
    )
    found = subprocess.run([venv / "bin" / "python", "-c", program], check=True, capture_output=True, text=True)
    files = found.stdout.split()
    assert len(files) == len(_ROSTER)
    assert all(f.startswith(str(site)) for f in files), files
