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


def free_rows_by_node(tree):
    """Each node's rows of the head's flat weight/bias, recomputed here from the tree alone: nodes are taken by
    their number of children (fewest first, node order among equals; nodes with one child own no row), and each
    owns the next len(children[n]) - 1 rows, one per child after the first (whose logit is fixed at 0)."""
    rows, start = [[] for _ in tree.children], 0
    for width in range(2, max(len(kids) for kids in tree.children) + 1):
        for node, kids in enumerate(tree.children):
            if len(kids) == width:
                rows[node] = list(range(start, start + width - 1))
                start += width - 1
    return rows


def brute_force_log_probs(head, h):
    """Walk every root-to-leaf path with explicit per-node softmaxes (child 0's logit fixed at 0)."""
    out = torch.zeros(h.shape[0], head.num_classes)
    rows = free_rows_by_node(head.tree)

    def walk(node, log_p):
        free = h @ head.weight[rows[node]].t() + head.bias[rows[node]]
        branch = torch.log_softmax(torch.cat([torch.zeros(h.shape[0], 1), free], dim=1), dim=1)
        for slot, child in enumerate(head.tree.children[node]):
            if child < 0:
                out[:, -child - 1] = log_p + branch[:, slot]
            else:
                walk(child, log_p + branch[:, slot])

    walk(0, torch.zeros(h.shape[0]))
    return out


def cifar_like_class_info():
    """100 classes in 20 superclasses of 5 (interleaved, as in tests/fake_cifar.py), skewed counts, embeddings."""
    rng = np.random.default_rng(1)
    return ClassInfo(num_classes=100, coarse_of_fine=tuple(int(c) for c in np.arange(100) % 20),
                     class_counts=tuple(int(c) for c in rng.integers(5, 500, size=100)),
                     class_embeddings=rng.normal(size=(100, 4)))


def uneven_class_info():
    """6 classes in superclasses of 1, 2 and 3 (the coarse root then holds a leaf beside two nodes), and skewed
    counts: the ternary Huffman tree needs one filler, so one of its nodes has 2 children, the others 3."""
    return ClassInfo(num_classes=6, coarse_of_fine=(0, 1, 1, 2, 2, 2), class_counts=(60, 30, 10, 5, 2, 1),
                     class_embeddings=np.random.default_rng(0).normal(size=(6, 2)))


@pytest.mark.parametrize("branching", [2, 3, 4, 8])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("make_info", [None, cifar_like_class_info], ids=["K=10", "K=100"])
def test_parameters_are_one_row_per_free_edge(layout, branching, make_info, tiny_class_info):
    """Whatever the tree's shape, K - 1 free logits per example: (K - 1)(d + 1) parameters, none of them padding."""
    info = make_info() if make_info else tiny_class_info
    k, d = info.num_classes, 8
    head = create_head("hierarchical", d, k, class_info=info, layout=layout, branching=branching)
    assert sum(len(kids) - 1 for kids in head.tree.children) == k - 1
    assert head.weight.shape == (k - 1, d) and head.bias.shape == (k - 1,)
    assert sum(p.numel() for p in head.parameters()) == (k - 1) * (d + 1)


def test_coarse_cifar_tree_has_99_free_logits_not_399():
    head = create_head("hierarchical", 128, 100, class_info=cifar_like_class_info(), layout="coarse")
    assert len(head.tree.children) == 21 and len(head.tree.children[0]) == 20
    assert sum(p.numel() for p in head.parameters()) == 99 * 129  # padded to the root's 20: 21 x 19 x 129 = 51,471


CASES = [("tiny", layout, b) for layout in LAYOUTS for b in (2, 3)]
CASES += [("uneven", "coarse", 2), ("uneven", "huffman", 3), ("uneven", "huffman", 2), ("uneven", "clustered", 4),
          ("cifar", "coarse", 2), ("cifar", "huffman", 8)]


def make_head(info_name, layout, branching, tiny_class_info, d=8):
    info = {"tiny": tiny_class_info, "uneven": uneven_class_info(), "cifar": cifar_like_class_info()}[info_name]
    torch.manual_seed(0)
    return create_head("hierarchical", d, info.num_classes, class_info=info, layout=layout, branching=branching)


def test_uneven_cases_are_uneven(tiny_class_info):
    coarse = make_head("uneven", "coarse", 2, tiny_class_info).tree
    assert sorted(len(kids) for kids in coarse.children) == [2, 3, 3] and min(coarse.children[0]) < 0  # a leaf
    huffman = make_head("uneven", "huffman", 3, tiny_class_info).tree
    assert sorted(len(kids) for kids in huffman.children) == [2, 3, 3]


@pytest.mark.parametrize("info_name,layout,branching", CASES)
def test_hierarchical_equals_brute_force(info_name, layout, branching, tiny_class_info):
    head = make_head(info_name, layout, branching, tiny_class_info)
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


@pytest.mark.parametrize("info_name,layout,branching", CASES)
def test_dense_and_path_training_give_the_same_gradients(info_name, layout, branching, tiny_class_info):
    head = make_head(info_name, layout, branching, tiny_class_info)
    h, y = torch.randn(6, 8), torch.tensor([0, 3, 5, 4, 4, 1])
    grads = []
    for dense in (True, False):
        head.zero_grad()
        head.dense = dense
        head.loss(h, y).backward()
        grads.append((head.weight.grad.clone(), head.bias.grad.clone()))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-6) and torch.allclose(grads[0][1], grads[1][1], atol=1e-6)


@pytest.mark.parametrize("dense", [True, False])
def test_both_modes_under_bf16_autocast(dense, tiny_class_info):
    """tests/test_heads.py runs every head under autocast, but its small trees all train dense: the path gather too
    keeps its log-partitions in fp32, so the loss and the log-probabilities stay near fp32's."""
    head = make_head("cifar", "coarse", 2, tiny_class_info, d=16)
    head.dense = head.matrix_inference = dense
    h, y = torch.randn(32, 16), torch.randint(0, 100, (32,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, log_probs = head.loss(h, y), head.log_probs(h)
    assert loss.dtype == log_probs.dtype == torch.float32
    assert loss.item() == pytest.approx(head.loss(h, y).item(), abs=0.05)
    assert torch.allclose(torch.logsumexp(log_probs, dim=1), torch.zeros(32), atol=1e-4)
    loss.backward()
    assert torch.isfinite(head.weight.grad).all() and torch.isfinite(head.bias.grad).all()


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("info_name,layout,branching", CASES)
def test_every_row_is_a_real_edge_and_the_distribution_is_normalised(info_name, layout, branching, dense,
                                                                     tiny_class_info):
    """With one example of every class, every parameter row gets a gradient (no row is padding), and only from the
    targets whose path passes through its node; the K probabilities sum to 1, even with large biases."""
    head = make_head(info_name, layout, branching, tiny_class_info)
    head.dense = head.matrix_inference = dense
    with torch.no_grad():
        head.bias.normal_(std=5.0)
    k = head.num_classes
    h, y = torch.randn(k, 8), torch.arange(k)
    assert torch.allclose(torch.logsumexp(head.log_probs(h), dim=1), torch.zeros(k), atol=1e-5)
    head.loss(h, y).backward()
    assert torch.all(head.weight.grad.abs().sum(dim=1) > 0) and torch.all(head.bias.grad != 0)
    rows = free_rows_by_node(head.tree)
    leaf_node = {-c - 1: node for node, kids in enumerate(head.tree.children) for c in kids if c < 0}
    head.zero_grad()
    head.loss(h[:1], y[:1]).backward()  # class 0 alone: its parent's rows get a gradient, a sibling subtree's not
    assert all(head.bias.grad[r] != 0 for r in rows[leaf_node[0]])
    off_path = [r for node, kids in enumerate(head.tree.children) if node not in path_nodes(head.tree, 0)
                for r in rows[node]]
    assert torch.all(head.bias.grad[off_path] == 0)


def path_nodes(tree, cls):
    parents = {c: node for node, kids in enumerate(tree.children) for c in kids}
    node, nodes = -cls - 1, []
    while node in parents:
        node = parents[node]
        nodes.append(node)
    return nodes


@pytest.mark.parametrize("dense", [True, False])
def test_a_node_with_one_child_has_no_free_logit_and_probability_one(dense, monkeypatch):
    from study.heads import hierarchical
    from study.heads.trees import Tree, leaf

    tree = Tree([[1, leaf(0)], [2], [leaf(1), leaf(2)]])  # node 1 only passes through to node 2
    monkeypatch.setattr(hierarchical, "create_tree", lambda *args: tree)
    torch.manual_seed(0)
    head = create_head("hierarchical", 8, 3)
    head.dense = head.matrix_inference = dense
    assert head.weight.shape == (2, 8)
    with torch.no_grad():
        head.bias.normal_()
        h = torch.randn(4, 8)
        assert torch.allclose(head.log_probs(h), brute_force_log_probs(head, h), atol=1e-5)
    head.loss(h, torch.tensor([0, 1, 2, 1])).backward()
    assert torch.all(head.weight.grad.abs().sum(dim=1) > 0)


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
    assert tree.note == ""  # k-means split every group: nothing to say


def test_clustered_says_how_many_groups_it_split_evenly():
    """Identical embeddings: k-means cannot split a group, which is then split evenly; the tree, the head's notes
    (console and report) and the layout's description say so."""
    info = ClassInfo(num_classes=8, class_embeddings=np.zeros((8, 2)))
    tree = create_tree("clustered", info, 2)
    assert tree.note == "3 of 3 groups split evenly: k-means could not split them"  # 8 -> 4 + 4 -> 2 + 2 each
    head = create_head("hierarchical", 4, 8, class_info=info, layout="clustered", branching=2)
    assert head.notes() == ["tree layout clustered (3 of 3 groups split evenly: k-means could not split them)"]
    embedded = np.array([[0, 0], [0, 0], [0, 0], [0, 0], [9, 9], [9, 9.1], [20, 20], [20, 20.1]])
    half = create_tree("clustered", ClassInfo(num_classes=8, class_embeddings=embedded), 2)
    assert half.note == "1 of 3 groups split evenly: k-means could not split them"  # only the 4 identical ones


def test_layouts_that_build_other_than_asked_say_so(tiny_class_info):
    coarse = create_head("hierarchical", 4, 10, class_info=tiny_class_info, layout="coarse", branching=4)
    assert coarse.notes() == ["tree layout coarse (the data's 4 superclasses set the shape; branching=4 is unused)"]
    assert create_tree("huffman", ClassInfo(num_classes=5), 2).note == "no class counts: every class weighted equally"
    assert create_tree("huffman", tiny_class_info, 2).note == ""
    assert create_head("hierarchical", 4, 10, class_info=tiny_class_info, layout="balanced").notes() == []
    sampled = create_head("sampled", 4, 10, class_info=ClassInfo(num_classes=10), proposal="unigram", num_sampled=3)
    assert sampled.notes() == ["proposal unigram without class counts: every class equally likely (the uniform "
                               "proposal)"]
    assert create_head("sampled", 4, 10, class_info=tiny_class_info, proposal="unigram", num_sampled=3).notes() == []


def leaves_under(tree, node):
    if node < 0:
        return [-node - 1]
    return [leaf for child in tree.children[node] for leaf in leaves_under(tree, child)]


def test_layouts_needing_data_say_so():
    with pytest.raises(ConfigError, match="coarse. needs the data.s class hierarchy.*choose from: balanced"):
        create_tree("coarse", ClassInfo(num_classes=10), 2)
    with pytest.raises(ConfigError, match="clustered.*embeddings"):
        create_tree("clustered", ClassInfo(num_classes=10), 2)
