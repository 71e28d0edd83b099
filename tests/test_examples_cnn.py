"""The convolutional examples (U-Net, text CNN, siamese network): each network against the same
network in PyTorch (same weights, loss, gradients and parameters after 3 AdamW steps, rtol
1e-4, both kernel sets), and each script end to end on a small stand-in for its data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch_parity import example, train_parity

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional


def write_images(directory: Path, images: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Fashion-MNIST's file layout (unzipped) for {"train": (x, y), "t10k": (x, y)}."""
    from qorus_core.io.idx import write_idx

    for part, (x, y) in images.items():
        write_idx(directory / f"{part}-images-idx3-ubyte", x)
        write_idx(directory / f"{part}-labels-idx1-ubyte", y)


def halves(rng: np.random.Generator, n: int, classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy 28x28 uint8 images of ``classes`` kinds: a bright band in row block c of
    ``classes`` blocks (two classes: the top half or the bottom half), and their labels."""
    y = rng.integers(0, classes, n).astype(np.uint8)
    x = (rng.random((n, 28, 28)) * 60).astype(np.uint8)
    rows = 28 // classes
    for c in range(classes):
        x[y == c, c * rows:(c + 1) * rows] += 150
    return x, y


def he_init(module: nn.Module) -> nn.Module:
    """He-normal weights (fan_out) and small uniform biases: a deep ReLU network whose
    gradients keep their scale, so none sits near AdamW's eps (1e-8), where float noise in
    an entry's gradient turns into a different step on each side and the runs drift apart."""
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() > 1:
                nn.init.kaiming_normal_(p, mode="fan_out", nonlinearity="relu")
            else:
                p.uniform_(-0.1, 0.1)
    return module


# ----------------------------------------------------------------------------- U-Net
class TorchUNet(nn.Module):
    """examples/unet_fashion.py's network in PyTorch, under the same parameter names."""

    def __init__(self, w: int):
        super().__init__()
        for name, c_in, c_out in (("down1", 1, w), ("down2", w, 2 * w), ("mid", 2 * w, 4 * w),
                                  ("dec2", 4 * w, 2 * w), ("dec1", 2 * w, w)):
            setattr(self, f"{name}_0", nn.Conv2d(c_in, c_out, 3, padding=1))
            setattr(self, f"{name}_1", nn.Conv2d(c_out, c_out, 3, padding=1))
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.out = nn.Conv2d(w, 1, 1)

    def block(self, x, name: str):
        x = F.relu(getattr(self, f"{name}_0")(x))
        return F.relu(getattr(self, f"{name}_1")(x))

    def forward(self, x):
        s1 = self.block(x, "down1")
        s2 = self.block(F.max_pool2d(s1, 2), "down2")
        h = self.block(F.max_pool2d(s2, 2), "mid")
        h = self.block(torch.cat([self.up2(h), s2], 1), "dec2")
        h = self.block(torch.cat([self.up1(h), s1], 1), "dec1")
        return self.out(h)


@pytest.mark.parametrize("ks", ["c", "numpy"])
def test_unet_trains_like_torch(ks):
    unet = example("unet_fashion")
    model = unet.build(image=8, width=4, kernels=ks)
    torch.manual_seed(0)
    ref = he_init(TorchUNet(4))
    x = {"image": np.random.default_rng(0).random((3, 1, 8, 8)).astype(np.float32)}
    worst = train_parity(model, ref, x, lambda t: ref(t["image"]))
    assert worst["param"] < 1e-4


def test_unet_example_learns(tmp_path):
    rng = np.random.default_rng(0)
    write_images(tmp_path, {"train": halves(rng, 800), "t10k": halves(rng, 100)})
    result = example("unet_fashion").main(["--epochs", "3", "--train", "800", "--test", "100",
                                           "--width", "8", "--data", str(tmp_path)])
    assert result["denoised_mse"] < 0.5 * result["noisy_mse"], result


# ----------------------------------------------------------------------------- text CNN
class TorchTextCNN(nn.Module):
    """examples/textcnn_fortunes.py's network in PyTorch, under the same parameter names."""

    def __init__(self, vocab: int, d: int, filters: int, widths: tuple[int, ...], classes: int):
        super().__init__()
        self.widths = widths
        self.emb = nn.Embedding(vocab, d)
        for w in widths:
            setattr(self, f"conv{w}", nn.Conv1d(d, filters, w))
        self.head = nn.Linear(filters * len(widths), classes)

    def forward(self, ids):
        h = self.emb(ids).transpose(1, 2)
        feats = [F.relu(getattr(self, f"conv{w}")(h)).max(-1).values for w in self.widths]
        return self.head(torch.cat(feats, -1))


@pytest.mark.parametrize("ks", ["c", "numpy"])
def test_textcnn_trains_like_torch(ks):
    textcnn = example("textcnn_fortunes")
    V, T, d, f, widths, C = 40, 16, 8, 6, (3, 4, 5), 3
    model = textcnn.build(T, d, f, widths, C, dropout=0.0, vocab=V, kernels=ks)
    torch.manual_seed(0)
    ref = TorchTextCNN(V, d, f, widths, C)
    ids = np.random.default_rng(0).integers(0, V, (4, T)).astype(np.int32)
    worst = train_parity(model, ref, {"ids": ids}, lambda t: ref(t["ids"].long()))
    assert worst["param"] < 1e-4


def test_textcnn_example_learns(tmp_path, monkeypatch):
    example("fortunes_data").write_tiny_corpus(tmp_path)
    monkeypatch.setenv("FORTUNES_DIR", str(tmp_path))
    test = example("textcnn_fortunes").main(["--epochs", "6"])
    assert test["accuracy"] > 0.6, test


# ----------------------------------------------------------------------------- siamese
class TorchSiamese(nn.Module):
    """examples/siamese_fashion.py's network in PyTorch, under the same parameter names."""

    def __init__(self, image: int, width: int, embed: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.embed = nn.Linear(2 * width * (image // 4) ** 2, embed)
        self.head = nn.Linear(2 * embed, 1)

    def encode(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return self.embed(h.flatten(1))

    def forward(self, a, b):
        ea, eb = self.encode(a), self.encode(b)
        return self.head(torch.cat([(ea - eb).abs(), ea * eb], -1))


@pytest.mark.parametrize("ks", ["c", "numpy"])
def test_siamese_trains_like_torch(ks):
    siamese = example("siamese_fashion")
    model = siamese.build(image=8, width=4, embed=8, kernels=ks)
    assert sorted(model.parameters()) == sorted(n for n, _ in TorchSiamese(8, 4, 8).named_parameters())
    torch.manual_seed(0)
    ref = TorchSiamese(8, 4, 8)
    rng = np.random.default_rng(0)
    x = {k: rng.random((4, 1, 8, 8)).astype(np.float32) for k in ("a", "b")}
    worst = train_parity(model, ref, x, lambda t: ref(t["a"], t["b"]))
    assert worst["param"] < 1e-4


def test_siamese_pairs_are_balanced():
    y = np.random.default_rng(0).integers(0, 10, 500)
    i, j, same = example("siamese_fashion").pairs(y, 1000, 0)
    assert np.array_equal(y[i] == y[j], same[:, 0] == 1) and same.mean() == 0.5


def test_siamese_example_learns(tmp_path):
    rng = np.random.default_rng(0)
    write_images(tmp_path, {"train": halves(rng, 600, 4), "t10k": halves(rng, 200, 4)})
    test = example("siamese_fashion").main(["--epochs", "3", "--pairs", "1500",
                                            "--test-pairs", "400", "--width", "8",
                                            "--data", str(tmp_path)])
    assert test["accuracy"] > 0.9, test
