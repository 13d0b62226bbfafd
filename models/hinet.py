"""HINet: Half Instance Normalization Network (Chen et al., CVPRW 2021).

A two-stage U-Net. Stage 1 restores a first estimate; a supervised attention
module (SAM) passes its features to stage 2, whose encoder also receives the
stage-1 encoder and decoder features (cross-stage feature fusion, CSFF). Blocks
in the deeper encoder levels normalise half of their channels with an affine
instance norm (HIN); the other half passes untouched.

Parameter names follow the official implementation exactly, so the public
``HINet-GoPro.pth`` and the contest checkpoints load with ``strict=True``.
The contest solution applies a sigmoid to both stage outputs; so does this model by default
(``output="sigmoid"``). ``output="linear"`` returns the stages as the official HINet does: the
input plus a learnt residual, clamped only when an image is saved. At initialisation that is
close to the identity, where a sigmoid head starts from ``sigmoid(input)``, a grey veil over
the whole picture; on dark night scenes the sigmoid head can push its logits so far negative
that its gradients vanish and it stays a constant black image (docs/differences.md).
``output="subtract"`` reads the same head as a flare layer: flare only adds light, so the stages
return the input with a non-negative flare subtracted in linear light (``subtract_flare``), an
image that can lose light but never gain it, and that equals the input wherever the head sees
no flare.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn


class HINBlock(nn.Module):
    """Residual double 3x3 conv block, optionally with HIN, CSFF and a strided downsample."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        downsample: bool,
        relu_slope: float,
        use_csff: bool = False,
        use_hin: bool = False,
    ) -> None:
        super().__init__()
        self.identity = nn.Conv2d(in_ch, out_ch, 1)
        self.conv_1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.relu_1 = nn.LeakyReLU(relu_slope)
        self.conv_2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.relu_2 = nn.LeakyReLU(relu_slope)
        self.use_csff = use_csff and downsample
        if self.use_csff:
            self.csff_enc = nn.Conv2d(out_ch, out_ch, 3, padding=1)
            self.csff_dec = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.use_hin = use_hin
        if use_hin:
            self.norm = nn.InstanceNorm2d(out_ch // 2, affine=True)
        self.downsample = nn.Conv2d(out_ch, out_ch, 4, stride=2, padding=1, bias=False) if downsample else None

    def forward(self, x: torch.Tensor, enc: torch.Tensor | None = None, dec: torch.Tensor | None = None):
        out = self.conv_1(x)
        if self.use_hin:
            half = out.shape[1] // 2
            out = torch.cat([self.norm(out[:, :half]), out[:, half:]], dim=1)
        out = self.relu_1(out)
        out = self.relu_2(self.conv_2(out))
        out = out + self.identity(x)
        if enc is not None and dec is not None:
            out = out + self.csff_enc(enc) + self.csff_dec(dec)
        if self.downsample is not None:
            return self.downsample(out), out
        return out


class UpBlock(nn.Module):
    """2x transposed-conv upsampling, concatenation with the skip feature, then a plain block."""

    def __init__(self, in_ch: int, out_ch: int, relu_slope: float) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.conv_block = HINBlock(in_ch, out_ch, False, relu_slope)

    def forward(self, x: torch.Tensor, bridge: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat([self.up(x), bridge], dim=1))


class SAM(nn.Module):
    """Supervised attention: a stage-1 image estimate gates the features handed to stage 2."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(n_feat, n_feat, 3, padding=1)
        self.conv2 = nn.Conv2d(n_feat, 3, 3, padding=1)
        self.conv3 = nn.Conv2d(3, n_feat, 3, padding=1)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The gated features and the stage-1 head (the residual on ``image``; the output mode reads it)."""
        residual = self.conv2(x)
        features = self.conv1(x) * torch.sigmoid(self.conv3(residual + image)) + x
        return features, residual


OUTPUTS = ("sigmoid", "linear", "subtract")
# The subtract head's flare is softplus(head - FLARE_OFFSET): a zero head removes 1.2e-4 of white in linear light,
# under half an 8-bit level even near black, and the heads of random weights (within a few tenths of zero) under one
# level, so an untrained model returns its input. The offset lives here rather than in a bias so that loading the
# weights of another mode (HINet-GoPro's, a linear model's) cannot undo it.
FLARE_OFFSET = 9.0


def srgb_to_linear(image: torch.Tensor) -> torch.Tensor:
    """IEC 61966-2-1 sRGB decoding. Both power branches see values clamped into their own segment: the branch that
    ``torch.where`` discards still passes its gradient on, and a NaN there (a negative base) would survive it."""
    power = ((image.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4
    return torch.where(image <= 0.04045, image / 12.92, power)


def linear_to_srgb(linear: torch.Tensor) -> torch.Tensor:
    """IEC 61966-2-1 sRGB encoding: a linear toe of slope 12.92 below 0.0031308 keeps the gradient finite at black,
    where a pure power 1/2.2 has an infinite slope."""
    power = 1.055 * linear.clamp(min=0.0031308) ** (1 / 2.4) - 0.055
    return torch.where(linear <= 0.0031308, linear * 12.92, power)


def subtract_flare(image: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """``image`` (sRGB) less the flare ``softplus(head - FLARE_OFFSET)`` in linear light, clamped at black.

    The transfer is sRGB, not the synthetic data's per-pair power (1.8-2.2): photographs are sRGB-encoded, and its
    linear toe keeps gradients finite near black. The final minimum with ``image`` makes "never brighter" exact
    despite the round-off of decoding and encoding again."""
    flare = F.softplus(head - FLARE_OFFSET)
    restored = (srgb_to_linear(image) - flare).clamp(min=0)
    return torch.minimum(linear_to_srgb(restored), image)


@dataclass(frozen=True)
class HINetConfig:
    """The architecture: all that is needed, with the weights, to rebuild a HINet (stored in checkpoints)."""

    in_chn: int = 3
    wf: int = 64  # width: channels of the first level, doubled at each level below
    depth: int = 5  # U-Net levels
    relu_slope: float = 0.2
    hin_position_left: int = 3  # encoder levels with Half Instance Normalisation, first and last
    hin_position_right: int = 4
    output: str = "sigmoid"  # "sigmoid" (the contest solution), "linear" (input + residual, the official HINet)
    # or "subtract" (input less a non-negative flare in linear light)

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise ValueError(f"output {self.output!r} is not one of {', '.join(OUTPUTS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> HINetConfig:
        """Build from a stored dictionary; unknown keys raise ``TypeError``."""
        return cls(**values)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (one halving per downsampling level)."""
        return 2 ** (self.depth - 1)


def pad_to_multiple(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """``image`` (N, C, H, W) reflect-padded at the bottom and right to multiples of ``multiple`` (zero
    padding would put a dark frame into the statistics); the tensor itself where no padding is needed."""
    height, width = image.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if not (pad_h or pad_w):
        return image
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return nn.functional.pad(image, (0, pad_w, 0, pad_h), mode=mode)


class HINet(nn.Module):
    """Two-stage HINet returning ``[stage1, stage2]`` (through a sigmoid by default); the restored image is the second.

    ``HINet(config)`` or ``HINet(wf=8, depth=3)``: keywords override fields of the (default) config.
    """

    def __init__(self, config: HINetConfig | None = None, **overrides) -> None:
        super().__init__()
        self.config = c = replace(config or HINetConfig(), **overrides)
        in_chn, wf, depth, relu_slope = c.in_chn, c.wf, c.depth, c.relu_slope
        hin_position_left, hin_position_right = c.hin_position_left, c.hin_position_right
        self.depth = depth
        self.conv_01 = nn.Conv2d(in_chn, wf, 3, padding=1)
        self.conv_02 = nn.Conv2d(in_chn, wf, 3, padding=1)
        self.down_path_1 = nn.ModuleList()
        self.down_path_2 = nn.ModuleList()
        prev = wf
        for level in range(depth):
            use_hin = hin_position_left <= level <= hin_position_right
            downsample = level + 1 < depth
            width = (2**level) * wf
            self.down_path_1.append(HINBlock(prev, width, downsample, relu_slope, use_hin=use_hin))
            self.down_path_2.append(HINBlock(prev, width, downsample, relu_slope, use_csff=True, use_hin=use_hin))
            prev = width
        self.up_path_1 = nn.ModuleList()
        self.up_path_2 = nn.ModuleList()
        self.skip_conv_1 = nn.ModuleList()
        self.skip_conv_2 = nn.ModuleList()
        for level in reversed(range(depth - 1)):
            width = (2**level) * wf
            self.up_path_1.append(UpBlock(prev, width, relu_slope))
            self.up_path_2.append(UpBlock(prev, width, relu_slope))
            self.skip_conv_1.append(nn.Conv2d(width, width, 3, padding=1))
            self.skip_conv_2.append(nn.Conv2d(width, width, 3, padding=1))
            prev = width
        self.sam12 = SAM(prev)
        self.cat12 = nn.Conv2d(prev * 2, prev, 1)
        self.last = nn.Conv2d(prev, in_chn, 3, padding=1)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Both stages' outputs for images of any height and width: padded here to the size multiple (each
        level halves them) and cropped back, so that no caller needs to know the multiple."""
        height, width = image.shape[-2:]
        padded = pad_to_multiple(image, self.config.size_multiple)
        outputs = self._stages(padded)
        return outputs if padded is image else [out[..., :height, :width] for out in outputs]

    def _stages(self, image: torch.Tensor) -> list[torch.Tensor]:
        x1 = self.conv_01(image)
        encs = []
        for down in self.down_path_1[:-1]:
            x1, skip = down(x1)
            encs.append(skip)
        x1 = self.down_path_1[-1](x1)
        decs = []
        for i, up in enumerate(self.up_path_1):
            x1 = up(x1, self.skip_conv_1[i](encs[-i - 1]))
            decs.append(x1)
        sam_features, head_1 = self.sam12(x1, image)

        x2 = self.cat12(torch.cat([self.conv_02(image), sam_features], dim=1))
        skips = []
        for i, down in enumerate(self.down_path_2[:-1]):
            x2, skip = down(x2, encs[i], decs[-i - 1])
            skips.append(skip)
        x2 = self.down_path_2[-1](x2)
        for i, up in enumerate(self.up_path_2):
            x2 = up(x2, self.skip_conv_2[i](skips[-i - 1]))
        return self._outputs(image, [head_1, self.last(x2)])

    def _outputs(self, image: torch.Tensor, heads: list[torch.Tensor]) -> list[torch.Tensor]:
        """Both stages' heads turned into images the same way, by the configured output mode."""
        if self.config.output == "subtract":
            return [subtract_flare(image, head) for head in heads]
        outputs = [head + image for head in heads]
        if self.config.output == "linear":
            return outputs
        return [torch.sigmoid(out) for out in outputs]
