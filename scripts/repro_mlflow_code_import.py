"""Minimal reproduction, for an upstream report: ``mlflow.pytorch.load_model`` imports a module from the model
folder's ``code/`` even with ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``.

Why (mlflow/pytorch/__init__.py): ``load_model`` first puts the folder's ``code/`` (the flavor's ``code`` key in
MLmodel) on ``sys.path``; ``_load_model`` then reads ``data/pickle_module_info.txt`` and calls
``importlib.import_module`` on the name it holds, and only after that calls ``_load_by_pickle_check``, which is
where the setting is enforced. Importing the module runs it. No torch model is needed: the folder below holds
an empty ``model.pth``.

Run: ``python scripts/repro_mlflow_code_import.py``; exit 0 and "reproduced" when the module ran, exit 1 and
"not reproduced" when this MLflow no longer imports it. Writes only into a temporary folder.
"""

import os
import sys
import tempfile
from pathlib import Path

os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"

import mlflow  # noqa: E402, TID251 (a reproduction of MLflow itself, outside the layers)
import torch  # noqa: E402

MLMODEL = """flavors:
  pytorch:
    model_data: data
    pytorch_version: {version}
    code: code
"""


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        folder, marker = Path(tmp) / "model", Path(tmp) / "module-ran"
        (folder / "data").mkdir(parents=True)
        (folder / "code").mkdir()
        (folder / "MLmodel").write_text(MLMODEL.format(version=torch.__version__))
        (folder / "data" / "model.pth").write_bytes(b"")
        (folder / "data" / "pickle_module_info.txt").write_text("repro_payload")
        (folder / "code" / "repro_payload.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
        try:
            mlflow.pytorch.load_model(str(folder))
        except Exception as error:  # the pickle check refuses, after the import
            refused = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:160]}"
        else:
            refused = "nothing (the model loaded)"
        ran = marker.exists()
    print(f"mlflow {mlflow.__version__}, MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false: code/repro_payload.py "
          f"{'ran' if ran else 'did not run'}; load_model then raised {refused}")
    print("reproduced" if ran else "not reproduced")
    return 0 if ran else 1


if __name__ == "__main__":
    sys.exit(main())
