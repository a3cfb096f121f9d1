"""PyTorch ``nn.Module`` definitions behind :mod:`vocalis.models.torch_nets`.

Imported only when a torch estimator is built or unpickled, so ``import vocalis`` works without
torch. Every network takes *raw* features and standardises them itself (a :class:`Standardize`
layer with mean/std buffers learned from the training data), so the exported ONNX graph needs
no separate scaler. Networks return logits; :class:`SoftmaxHead` adds the softmax for export.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Standardize(nn.Module):
    """``(x - mean) / std`` with fixed buffers; ``mean``/``std`` of shape ``(D,)`` or ``(C, 1)``."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean, dtype=np.float32)))
        self.register_buffer("std", torch.as_tensor(np.asarray(std, dtype=np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class SoftmaxHead(nn.Module):
    """Wraps a logits network and applies softmax over classes (for ONNX export)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=-1)


class CNN1DNet(nn.Module):
    """Four Conv1D blocks over a feature *vector* treated as a 1-channel sequence, then dense.

    Input ``(N, D)``; output logits ``(N, K)``. Each block: Conv1d(kernel 5, same padding) ->
    BatchNorm -> ReLU -> MaxPool(2) (skipped once the length is 1) -> Dropout.
    """

    channels = (256, 128, 128, 64)

    def __init__(self, mean: np.ndarray, std: np.ndarray, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.standardize = Standardize(mean, std)
        length = int(np.asarray(mean).shape[0])
        layers: list[nn.Module] = []
        in_ch = 1
        for out_ch in self.channels:
            layers += [nn.Conv1d(in_ch, out_ch, 5, padding=2), nn.BatchNorm1d(out_ch), nn.ReLU()]
            if length >= 2:
                layers.append(nn.MaxPool1d(2))
                length //= 2
            layers.append(nn.Dropout(dropout))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_ch * length, 64),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(64, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.standardize(x).unsqueeze(1)
        return self.head(self.features(x))


def _conv2d_block(in_ch: int, out_ch: int, pool: tuple[int, int]) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(),
    ]
    if pool != (1, 1):
        layers.append(nn.MaxPool2d(pool))
    return nn.Sequential(*layers)


def _scaled(channels: tuple[int, ...], width: float) -> tuple[int, ...]:
    """Channel counts multiplied by ``width`` (at least 4 each)."""
    return tuple(max(4, round(c * width)) for c in channels)


def _conv_stack(
    n_freq: int, channels: tuple[int, ...], time_pools: tuple[int, ...], width: float
) -> tuple[nn.Sequential, int, int]:
    """Conv2d blocks pooling frequency by 2 (while > 1 band) and time by ``time_pools``.

    Returns the stack, its output channels and the remaining frequency bands.
    """
    blocks: list[nn.Module] = []
    in_ch = 1
    for out_ch, tp in zip(_scaled(channels, width), time_pools, strict=True):
        fp = 2 if n_freq >= 2 else 1
        n_freq //= fp
        blocks.append(_conv2d_block(in_ch, out_ch, (fp, tp)))
        in_ch = out_ch
    return nn.Sequential(*blocks), in_ch, n_freq


class CNN2DNet(nn.Module):
    """Small 2-D CNN on ``(N, C, T)`` frames (C = mel bands): 4 blocks 32-64-128-128.

    Each block: Conv3x3 -> BN -> ReLU -> MaxPool(2 x 2) (frequency pooling is skipped once the
    band axis is 1). Then mean over frequency, global average + max pooling over time, dropout
    and a linear layer. Needs ``T >= min_frames`` (16).
    """

    channels = (32, 64, 128, 128)
    time_pools = (2, 2, 2, 2)

    def __init__(self, mean: np.ndarray, std: np.ndarray, n_classes: int, dropout: float,
                 width: float = 1.0) -> None:
        super().__init__()
        self.standardize = Standardize(np.asarray(mean)[:, None], np.asarray(std)[:, None])
        self.blocks, in_ch, _n_freq = _conv_stack(int(np.asarray(mean).shape[0]), self.channels, self.time_pools, width)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * in_ch, n_classes)

    @classmethod
    def min_frames(cls) -> int:
        return int(np.prod(cls.time_pools))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.standardize(x).unsqueeze(1))  # (N, ch, F', T')
        x = x.mean(dim=2)  # (N, ch, T')
        x = torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=1)
        return self.fc(self.dropout(x))


class CRNNNet(nn.Module):
    """Conv blocks (frequency pooled 8x, time 4x) -> bidirectional GRU/LSTM -> pooling -> linear.

    Input ``(N, C, T)``; needs ``T >= min_frames`` (4). Pooling over time is ``"attention"``
    (learned softmax weights per frame) or ``"mean"``.
    """

    channels = (32, 64, 128)
    time_pools = (2, 2, 1)

    def __init__(
        self,
        mean: np.ndarray,
        std: np.ndarray,
        n_classes: int,
        dropout: float,
        rnn: str = "gru",
        hidden: int = 128,
        pooling: str = "attention",
        width: float = 1.0,
    ) -> None:
        super().__init__()
        self.standardize = Standardize(np.asarray(mean)[:, None], np.asarray(std)[:, None])
        self.blocks, in_ch, n_freq = _conv_stack(int(np.asarray(mean).shape[0]), self.channels, self.time_pools, width)
        self.conv_dropout = nn.Dropout(dropout)
        self.hidden = hidden
        self.is_lstm = rnn == "lstm"
        rnn_cls = nn.LSTM if self.is_lstm else nn.GRU
        self.rnn = rnn_cls(in_ch * n_freq, hidden, batch_first=True, bidirectional=True)
        self.pooling = pooling
        self.attention = nn.Linear(2 * hidden, 1) if pooling == "attention" else None
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * hidden, n_classes)

    @classmethod
    def min_frames(cls) -> int:
        return int(np.prod(cls.time_pools))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.standardize(x).unsqueeze(1))  # (N, ch, F', T')
        x = self.conv_dropout(x.permute(0, 3, 1, 2).flatten(2))  # (N, T', ch * F')
        # explicit zero initial state: keeps the exported graph valid for any batch size
        h0 = x.new_zeros(2, x.shape[0], self.hidden)
        if self.is_lstm:
            h, _ = self.rnn(x, (h0, h0))
        else:
            h, _ = self.rnn(x, h0)  # (N, T', 2H)
        if self.attention is not None:
            w = torch.softmax(self.attention(h), dim=1)  # (N, T', 1)
            pooled = (w * h).sum(dim=1)
        else:
            pooled = h.mean(dim=1)
        return self.fc(self.dropout(pooled))
