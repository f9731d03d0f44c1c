"""A trial names the sweep's stage-1 run of its seed only when that run is its stage 1: Table 2's LORD row
(class codes) trains its own stage 1 inside the trial and once named the labelled-factor one."""

from types import SimpleNamespace

from mlflow import MlflowClient

from contralord.config import ContraLordConfig
from contralord.latent_result import latent_key
from contralord.setup import Setup, build_data
from tune.trial.worker import _stage1_tags


def test_stage1_tag__only_for_the_trial_whose_stage1_it_is(tmp_path, tiny_overrides):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    shared = ContraLordConfig.from_overrides(tiny_overrides)
    data = build_data(shared)
    key = latent_key(Setup.of(shared, data))
    run_id = client.create_run(client.create_experiment("stage1"), tags={"latent_key": key}).info.run_id
    ctx = SimpleNamespace(stage1_runs={str(shared.run.seed): run_id}, tracking_uri=uri)
    assert _stage1_tags(ctx, Setup.of(shared, data)) == {"stage1_run_id": run_id}
    lord = ContraLordConfig.from_overrides(tiny_overrides | {"latent.structure": "class"})
    tags = _stage1_tags(ctx, Setup.of(lord, build_data(lord)))
    assert tags["stage1_run_id"] == "" and "trained in the trial" in tags["stage1"]
    vae = ContraLordConfig.from_overrides(tiny_overrides | {"encoder.model": "vae", "loss.sup": 0.0, "loss.con": 0.0,
                                                            "loss.res": 0.0})
    assert _stage1_tags(ctx, Setup.of(vae, data)) == {"stage1_run_id": ""}  # Locatello et al.: no stage 1 at all
