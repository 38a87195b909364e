"""Registry-driven tree-layout tests, and the hierarchical head against a brute-force product of branch
probabilities."""
import numpy as np
import pytest
import torch

from study.class_info import ClassInfo
from study.errors import ConfigError
from study.heads import create_head
from study.heads.trees import create_tree, list_tree_layouts

LAYOUTS = list_tree_layouts()


@pytest.mark.parametrize("branching", [2, 3, 4])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_class_is_one_leaf(layout, branching, tiny_class_info):
    tree = create_tree(layout, tiny_class_info, branching)
    assert tree.leaf_classes() == list(range(10))
    assert all(len(kids) >= 1 for kids in tree.children)


@pytest.mark.parametrize("layout", [name for name in LAYOUTS if name != "coarse"])
def test_branching_is_respected(layout, tiny_class_info):
    tree = create_tree(layout, tiny_class_info, 3)
    assert max(len(kids) for kids in tree.children) <= 3


def brute_force_log_probs(head, h):
    """Walk every root-to-leaf path with explicit per-node softmaxes (child 0's logit fixed at 0)."""
    out = torch.zeros(h.shape[0], head.num_classes)

    def walk(node, log_p):
        kids = head.tree.children[node]
        free = h @ head.weight[node, : len(kids) - 1].t() + head.bias[node, : len(kids) - 1]
        branch = torch.log_softmax(torch.cat([torch.zeros(h.shape[0], 1), free], dim=1), dim=1)
        for slot, child in enumerate(kids):
            if child < 0:
                out[:, -child - 1] = log_p + branch[:, slot]
            else:
                walk(child, log_p + branch[:, slot])

    walk(0, torch.zeros(h.shape[0]))
    return out


@pytest.mark.parametrize("branching", [2, 3])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_hierarchical_equals_brute_force(layout, branching, tiny_class_info):
    torch.manual_seed(0)
    head = create_head("hierarchical", 8, 10, class_info=tiny_class_info, layout=layout, branching=branching)
    with torch.no_grad():
        head.bias.normal_()
        h, y = torch.randn(5, 8), torch.arange(5)
        expected = brute_force_log_probs(head, h)
        # Both computations (dense matmuls for small trees; path gather and level-by-level accumulation for large
        # ones) give the same distribution and its NLL.
        for dense in (True, False):
            head.dense = head.matrix_inference = dense
            assert torch.allclose(head.log_probs(h), expected, atol=1e-5)
            assert torch.allclose(head.loss(h, y), -expected[torch.arange(5), y].mean(), atol=1e-5)


@pytest.mark.parametrize("branching", [2, 3])
def test_dense_and_path_training_give_the_same_gradients(branching, tiny_class_info):
    torch.manual_seed(0)
    head = create_head("hierarchical", 8, 10, class_info=tiny_class_info, layout="huffman", branching=branching)
    h, y = torch.randn(6, 8), torch.tensor([0, 3, 5, 9, 9, 1])
    grads = []
    for dense in (True, False):
        head.zero_grad()
        head.dense = dense
        head.loss(h, y).backward()
        grads.append((head.weight.grad.clone(), head.bias.grad.clone()))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-6) and torch.allclose(grads[0][1], grads[1][1], atol=1e-6)


@pytest.mark.parametrize("dense", [True, False])
def test_padding_children_get_no_probability_and_no_gradient(dense, tiny_class_info):
    # The coarse layout pads the superclass nodes (2 or 3 children) to the root's width (4 superclasses).
    torch.manual_seed(0)
    head = create_head("hierarchical", 8, 10, class_info=tiny_class_info, layout="coarse")
    head.dense = head.matrix_inference = dense
    with torch.no_grad():
        head.bias.normal_(std=5.0)  # padding slots too: they must still get probability 0
    h, y = torch.randn(6, 8), torch.tensor([0, 3, 5, 9, 9, 1])
    assert torch.allclose(head.log_probs(h).exp().sum(dim=1), torch.ones(6), atol=1e-5)
    head.loss(h, y).backward()
    padding = head.absent != 0  # [nodes, width - 1] free slots with no child behind them
    assert padding.any() and (~padding).any()
    assert torch.all(head.weight.grad[padding] == 0) and torch.all(head.bias.grad[padding] == 0)
    assert head.weight.grad[~padding].abs().sum() > 0


def path_length(tree, cls):
    parents = {c: (node) for node, kids in enumerate(tree.children) for c in kids}
    node, depth = -cls - 1, 0
    while node in parents and node != 0:
        node, depth = parents[node], depth + 1
    return depth


def test_huffman_gives_frequent_classes_shorter_paths():
    info = ClassInfo(num_classes=8, class_counts=(1000, 100, 10, 10, 1, 1, 1, 1))
    tree = create_tree("huffman", info, 2)
    assert path_length(tree, 0) < path_length(tree, 7)


def test_coarse_groups_by_superclass(tiny_class_info):
    tree = create_tree("coarse", tiny_class_info, 2)
    groups = sorted(sorted(-c - 1 for c in tree.children[child]) for child in tree.children[0] if child >= 0)
    assert groups == [[0, 1, 2], [3, 4], [5, 6, 7], [8, 9]]


def test_clustered_separates_clear_clusters():
    emb = np.array([[0, 0], [0, 1], [1, 0], [50, 50], [50, 51], [51, 50]], dtype=float)
    tree = create_tree("clustered", ClassInfo(num_classes=6, class_embeddings=emb), 2)
    top = [sorted(leaves_under(tree, child)) for child in tree.children[0]]
    assert sorted(top) == [[0, 1, 2], [3, 4, 5]]


def leaves_under(tree, node):
    if node < 0:
        return [-node - 1]
    return [leaf for child in tree.children[node] for leaf in leaves_under(tree, child)]


def test_layouts_needing_data_say_so():
    with pytest.raises(ConfigError, match="coarse.*fine->coarse"):
        create_tree("coarse", ClassInfo(num_classes=10), 2)
    with pytest.raises(ConfigError, match="clustered.*embeddings"):
        create_tree("clustered", ClassInfo(num_classes=10), 2)
