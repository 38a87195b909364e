import pytest
import torch

from study.backbones import create_backbone, list_backbones
from study.errors import ConfigError

SMALL = {"tinyvgg": {"width": 8}, "resnet18": {"width": 8}, "resnet12": {"widths": (8, 8, 16, 16)}}


@pytest.mark.parametrize("name", list_backbones())
def test_features_shape_and_gradient(name):
    torch.manual_seed(0)
    model = create_backbone(name, **SMALL.get(name, {}))
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    features = model(x)
    assert features.shape == (2, model.num_features)
    features.sum().backward()
    assert x.grad.abs().sum() > 0


def test_resnet12_is_the_seeds_shape():
    model = create_backbone("resnet12")
    assert model.num_features == 640
    assert 12.0e6 < sum(p.numel() for p in model.parameters()) < 13.0e6


def test_unknown_backbone_and_knob():
    with pytest.raises(ValueError, match="unknown backbone 'vit'; choose from: resnet12, resnet18, tinyvgg"):
        create_backbone("vit")
    with pytest.raises(ConfigError, match="unknown knob 'depth' for backbone 'tinyvgg'; choose from: width"):
        create_backbone("tinyvgg", depth=3)
