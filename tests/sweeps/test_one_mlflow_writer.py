"""One MLflow writer: only ``tune/trial/mlflow_logger.py`` writes to an MLflow store, and only
``ablations/store.tracking_client`` builds an ``MlflowClient`` (issue 31, docs/MLFLOW.md).

A scan of the source of tune/, ablations/ and contralord/ (no Ray, no store). A write is
- a write method of ``MlflowClient`` (create_, set_, log_, delete_, update_, ... : read off the class itself)
  on a client; a method name that no class of ours also defines counts on any receiver, one that ours defines
  too (``MlflowLogger.log_image``) only on something named ``client``;
- a write function of the ``mlflow`` module or its flavours (``mlflow.start_run``, ``mlflow.pytorch.log_model``),
  called or imported.
Calls into the writer module itself (``ml.log_batch(client, ...)``) are what the other modules do instead.
"""

import ast
from pathlib import Path

import pytest
from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tune", "ablations", "contralord")
WRITER = "tune/trial/mlflow_logger.py"
WRITER_MODULE = "tune.trial.mlflow_logger"
FACTORY = ("ablations/store.py", "tracking_client")
WRITE_PREFIXES = ("create_", "set_", "log_", "delete_", "update_", "rename_", "restore_", "transition_",
                  "finalize_", "copy_", "link_", "unlink_", "detach_", "register_", "add_", "remove_",
                  "initialize_", "start_run", "end_run", "autolog")
CLIENT_WRITES = {name for name in dir(MlflowClient) if name.startswith(WRITE_PREFIXES)}


def _sources() -> dict[str, ast.Module]:
    files = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))
    return {str(p.relative_to(ROOT)): ast.parse(p.read_text(), str(p)) for p in files}


def _our_methods(trees: dict[str, ast.Module]) -> set[str]:
    """Method names defined on any class of ours (a ``log_image`` of ours is not MLflow's)."""
    return {item.name for tree in trees.values() for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
            for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _bindings(tree: ast.Module, module: str) -> set[str]:
    """Names a file binds to ``module`` or a submodule of it (``import mlflow.pytorch``, ``from tune import
    mlflow_logger as ml``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names
                      if a.name == module or a.name.startswith(module + ".")}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {a.asname or a.name for a in node.names if f"{node.module}.{a.name}" == module}
    return names


def _root(node: ast.expr) -> ast.expr:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node


def _writes(path: str, tree: ast.Module, ours: set[str]) -> list[str]:
    """``path:line name`` of each MLflow write in one file."""
    mlflow_names, writer_names = _bindings(tree, "mlflow"), _bindings(tree, WRITER_MODULE)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mlflow":
            found += [f"{path}:{node.lineno} from {node.module} import {a.name}" for a in node.names
                      if a.name.startswith(WRITE_PREFIXES) or a.name in ("log_model", "save_model")]
        if not isinstance(node, ast.Attribute):
            continue
        root = _root(node.value)
        root_name = root.id if isinstance(root, ast.Name) else ""
        receiver = ast.unparse(node.value)
        if root_name in writer_names:
            continue
        on_mlflow = root_name in mlflow_names and (node.attr.startswith(WRITE_PREFIXES) or
                                                   node.attr in ("log_model", "save_model"))
        on_client = node.attr in CLIENT_WRITES and (node.attr not in ours or "client" in receiver.lower()
                                                     or "MlflowClient(" in receiver)
        if on_mlflow or on_client:
            found.append(f"{path}:{node.lineno} {receiver}.{node.attr}")
    return found


def _client_constructions(path: str, tree: ast.Module) -> list[str]:
    """``path:line function`` of each ``MlflowClient(...)``, by whatever name it was imported."""
    names = {"MlflowClient"} | {a.asname for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                                for a in node.names if a.name == "MlflowClient" and a.asname}
    found = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Call) and getattr(child.func, "id", getattr(child.func, "attr", "")) in names:
                found.append(f"{path}:{child.lineno} {function}")
            visit(child, child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function)

    visit(tree, "<module>")
    return found


@pytest.fixture(scope="module")
def trees():
    return _sources()


def test_mlflow_writes__only_in_the_writer(trees):
    ours = _our_methods(trees)
    outside = [w for path, tree in trees.items() if path != WRITER for w in _writes(path, tree, ours)]
    assert not outside, f"MLflow writes outside {WRITER} (write through its functions): {outside}"


def test_mlflow_writes__the_scan_sees_the_writers_own(trees):
    """The scan is not blind: the writer's own writes are found (a scan finding none anywhere proves nothing)."""
    found = _writes(WRITER, trees[WRITER], _our_methods(trees))
    assert any("create_run" in w for w in found) and any("mlflow.pytorch.log_model" in w for w in found)


def test_mlflow_client__built_only_by_the_factory(trees):
    sites = [site for path, tree in trees.items() for site in _client_constructions(path, tree)]
    path, function = FACTORY
    assert len(sites) == 1 and sites[0].startswith(f"{path}:") and sites[0].endswith(f" {function}"), sites


def test_mlflow_client__no_script_builds_its_own():
    scripts = [p for package in ("tune", "ablations") for p in (ROOT / package).rglob("*") if p.suffix in (".sh",)]
    building = [str(p.relative_to(ROOT)) for p in scripts if "MlflowClient(" in p.read_text()]
    assert not building, f"scripts that build an MlflowClient (call ablations.store.{FACTORY[1]}): {building}"
