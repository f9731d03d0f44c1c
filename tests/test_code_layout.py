"""labels.layout: the one answer to "which columns of the codes stand for what" that every consumer asks."""

import torch

from contralord import labels
from contralord.config import ContraLordConfig
from contralord.models.latent import build_factor_codes
from contralord.setup import build_data


def test_factors__one_block_per_labelled_factor_in_order(tiny_overrides):
    cfg = ContraLordConfig.from_overrides(tiny_overrides | {"latent.factor_dim": 2, "latent.residual_dim": 5})
    data = build_data(cfg)
    layout = labels.layout(cfg, data)
    assert layout.dims == (0, 6, 5) and layout.factors == ("floor_hue", "wall_hue", "object_hue")
    assert [layout.columns(n) for n in layout.factors] == [slice(0, 2), slice(2, 4), slice(4, 6)]
    assert layout.first_columns == [0, 2, 4]
    assert layout.content_names == ["floor_hue.0", "floor_hue.1", "wall_hue.0", "wall_hue.1", "object_hue.0",
                                    "object_hue.1"]
    # stage 1's factor model writes each factor's code into that factor's block
    sizes = labels.resolve(cfg, data).sizes
    model = build_factor_codes(cfg.latent, sizes, data.channels, cfg.data.image_size, torch.Generator().manual_seed(0))
    known = torch.tensor([[1, 2, 3]])
    codes, _ = model(data.images[:1].float().div(255), known)
    for j, name in enumerate(layout.factors):
        torch.testing.assert_close(codes[0, layout.columns(name)], model.tables[j][known[0, j]])


def test_one_column_per_factor__names_are_the_factors(tiny_overrides):
    cfg = ContraLordConfig.from_overrides(tiny_overrides)
    layout = labels.layout(cfg, build_data(cfg))
    assert layout.content_names == list(layout.factors) and layout.first_columns == [0, 1, 2]


def test_class_structure__lords_three_codes(tiny_overrides):
    cfg = ContraLordConfig.from_overrides(tiny_overrides | {"latent.structure": "class"})
    layout = labels.layout(cfg, build_data(cfg))
    assert layout.dims == (8, 4, 4) and layout.factors == () and layout.content_names == ["c0", "c1", "c2", "c3"]
