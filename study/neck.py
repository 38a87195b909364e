"""The one layer every head trains behind in a frozen-backbone study (study/frozen.py)."""
import torch


class Neck(torch.nn.Module):
    """What sits between the frozen features and the head: nothing (width 0), or one Linear-BatchNorm-ReLU layer,
    the same for every head."""

    def __init__(self, in_features: int, width: int = 0):
        super().__init__()
        self.num_features = width or in_features
        self.layers = (torch.nn.Sequential(torch.nn.Linear(in_features, width, bias=False),
                                           torch.nn.BatchNorm1d(width), torch.nn.ReLU())
                       if width else torch.nn.Identity())

    def forward(self, features):
        return self.layers(features)
