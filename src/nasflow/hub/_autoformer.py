"""``AutoFormer``: the vision-transformer space of AutoFormer (Chen et al., ICCV 2021), labels
and defaults as NNI's ``AutoformerSpace``.

Searched: the embedding width (``embed_dim``, shared by every layer), the depth
(``depth``), and per layer the number of attention heads (``num_head_{i}``, 64 channels
each) and the MLP ratio (``mlp_ratio_{i}``). Attention is written out with separate
``q``/``k``/``v`` linears whose widths are ``heads * head_dim``, so one-shot strategies
slice one shared weight per layer for every head count and width (AutoFormer's weight
entanglement); relative position tables (``rpe``) have a fixed head width and are shared
as they are. The class token and the absolute position embedding are one small module per
embedding width in a supernet (nasflow does not slice parameters outside layers).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

import nasflow as nf
from nasflow import nn as snn
from nasflow.hub._blocks import Width
from nasflow.hub._searched import Searched, searched_model
from nasflow.space import Expr, Sample

__all__ = ["AUTOFORMER_ARCHS", "AutoFormer", "AutoformerSpace"]


class ClsToken(nn.Module):
    """Prepends a learned class token of ``embed_dim`` channels."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)


class AbsPosEmbed(nn.Module):
    """Adds a learned position embedding of ``length`` tokens."""

    def __init__(self, length: int, embed_dim: int) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, length, embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pos_embed


SearchableClsToken = snn.searchable(ClsToken)
SearchableAbsPosEmbed = snn.searchable(AbsPosEmbed)


class RelativePosition2D(nn.Module):
    """AutoFormer's 2-D relative position table: one embedding per clipped row and column
    distance between patches of a ``grid x grid`` image (index 0 is the class token)."""

    def __init__(self, head_dim: int, grid: int, clip: int = 14) -> None:
        super().__init__()
        self.grid = grid
        self.clip = clip
        self.embeddings_table_v = nn.Parameter(torch.empty(clip * 2 + 2, head_dim))
        self.embeddings_table_h = nn.Parameter(torch.empty(clip * 2 + 2, head_dim))
        nn.init.trunc_normal_(self.embeddings_table_v, std=0.02)
        nn.init.trunc_normal_(self.embeddings_table_h, std=0.02)

    def forward(self) -> torch.Tensor:
        # the indices depend on the (fixed) grid only, so fx records them as constants of
        # the computation and exported code rebuilds them the same way
        n = self.grid * self.grid
        pos = torch.arange(n, device=self.embeddings_table_v.device)
        v = (pos[None, :] // self.grid - pos[:, None] // self.grid).clamp(-self.clip, self.clip)
        h = (pos[None, :] % self.grid - pos[:, None] % self.grid).clamp(-self.clip, self.clip)
        v = F.pad(v + self.clip + 1, (1, 0, 1, 0))
        h = F.pad(h + self.clip + 1, (1, 0, 1, 0))
        return self.embeddings_table_v[v] + self.embeddings_table_h[h]


class Attention(nn.Module):
    """Multi-head self-attention with ``num_heads`` heads of ``head_dim`` channels (the
    head count follows the ``q`` width, so a sliced ``q`` runs fewer heads) and optional
    relative position terms on keys and values."""

    def __init__(self, embed_dim: Width, num_heads: int | Expr, head_dim: int, *,
                 qkv_bias: bool, rpe: bool, grid: int, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, qk_scale: float | None = None) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.scale = qk_scale or head_dim ** -0.5
        inner = num_heads * head_dim
        self.q = snn.Linear(embed_dim, inner, bias=qkv_bias)
        self.k = snn.Linear(embed_dim, inner, bias=qkv_bias)
        self.v = snn.Linear(embed_dim, inner, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = snn.Linear(inner, embed_dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.rpe = rpe
        if rpe:
            self.rel_pos_embed_k = RelativePosition2D(head_dim, grid)
            self.rel_pos_embed_v = RelativePosition2D(head_dim, grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        d = self.head_dim
        q = self.q(x).reshape(b, n, -1, d).permute(0, 2, 1, 3)
        k = self.k(x).reshape(b, n, -1, d).permute(0, 2, 1, 3)
        v = self.v(x).reshape(b, n, -1, d).permute(0, 2, 1, 3)
        heads = q.shape[1]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        if self.rpe:
            r_k = self.rel_pos_embed_k()
            qr = q.permute(2, 0, 1, 3).reshape(n, heads * b, d) @ r_k.transpose(2, 1)
            attn = attn + qr.transpose(1, 0).reshape(b, heads, n, n) * self.scale
        attn = self.attn_drop(attn.softmax(dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(b, n, heads * d)
        if self.rpe:
            r_v = self.rel_pos_embed_v()
            av = attn.permute(2, 0, 1, 3).reshape(n, b * heads, n) @ r_v
            out = out + av.transpose(1, 0).reshape(b, heads, n, d).transpose(2, 1).reshape(
                b, n, heads * d)
        return self.proj_drop(self.proj(out))


class EncoderLayer(nn.Module):
    """A pre-norm (or post-norm) transformer layer: attention, then a GELU MLP of
    ``int(embed_dim * mlp_ratio)`` hidden units, each with a residual."""

    def __init__(self, embed_dim: Width, num_heads: int | Expr, mlp_ratio: float | Expr, *,
                 head_dim: int, qkv_bias: bool, rpe: bool, grid: int, pre_norm: bool,
                 drop_rate: float, attn_drop: float, qk_scale: float | None) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.attn = Attention(embed_dim, num_heads, head_dim, qkv_bias=qkv_bias, rpe=rpe,
                              grid=grid, attn_drop=attn_drop, qk_scale=qk_scale)
        self.attn_layer_norm = snn.LayerNorm(embed_dim)
        self.ffn_layer_norm = snn.LayerNorm(embed_dim)
        hidden = (embed_dim * mlp_ratio).int() if isinstance(embed_dim * mlp_ratio, Expr) \
            else int(embed_dim * mlp_ratio)
        self.fc1 = snn.Linear(embed_dim, hidden)
        self.act = nn.GELU()
        self.fc2 = snn.Linear(hidden, embed_dim)
        self.drop1 = nn.Dropout(drop_rate)
        self.drop2 = nn.Dropout(drop_rate)
        self.drop3 = nn.Dropout(drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attn(self.attn_layer_norm(x) if self.pre_norm else x)
        x = x + self.drop1(y)
        if not self.pre_norm:
            x = self.attn_layer_norm(x)
        y = self.ffn_layer_norm(x) if self.pre_norm else x
        x = x + self.drop3(self.fc2(self.drop2(self.act(self.fc1(y)))))
        return x if self.pre_norm else self.ffn_layer_norm(x)


class AutoFormer(snn.ModelSpace):
    """The AutoFormer space (NNI's ``AutoformerSpace``: same labels, defaults, arguments;
    ``head_dim`` is NNI's fixed 64 made an argument, for small variants).

    The defaults are AutoFormer-Tiny's supernet; ``AutoFormer.searched("autoformer-tiny")``
    is the published AutoFormer-Tiny. For 32x32 tests: ``AutoFormer(img_size=32,
    patch_size=8, search_embed_dim=(16, 32), search_num_heads=(1, 2), head_dim=8,
    search_depth=(1, 2), num_classes=10)``. Drop path is not offered (it needs a
    train/eval branch that code export would freeze).
    """

    def __init__(
        self, search_embed_dim: Sequence[int] = (192, 216, 240),
        search_mlp_ratio: Sequence[float] = (3.0, 3.5, 4.0),
        search_num_heads: Sequence[int] = (3, 4), search_depth: Sequence[int] = (12, 13, 14),
        img_size: int = 224, patch_size: int = 16, in_chans: int = 3, num_classes: int = 1000,
        qkv_bias: bool = False, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
        pre_norm: bool = True, global_pool: bool = False, abs_pos: bool = True,
        qk_scale: float | None = None, rpe: bool = True, head_dim: int = 64,
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"AutoFormer: img_size {img_size} must be a multiple of "
                             f"patch_size {patch_size}")
        embed = nf.Categorical(list(search_embed_dim), label="embed_dim")
        depth = nf.Categorical(list(search_depth), label="depth")
        most = max(search_depth)
        ratios = [nf.Categorical(list(search_mlp_ratio), label=f"mlp_ratio_{i}")
                  for i in range(most)]
        heads = [nf.Categorical(list(search_num_heads), label=f"num_head_{i}")
                 for i in range(most)]
        grid = img_size // patch_size
        self.patches_num = grid * grid
        self.global_pool = global_pool
        self.patch_embed = snn.Conv2d(in_chans, embed, kernel_size=patch_size,
                                      stride=patch_size)
        self.cls_token = SearchableClsToken(embed)
        self.pos_embed = (SearchableAbsPosEmbed(self.patches_num + 1, embed) if abs_pos
                          else nn.Identity())
        self.blocks = snn.Repeat(lambda i: EncoderLayer(
            embed, heads[i], ratios[i], head_dim=head_dim, qkv_bias=qkv_bias, rpe=rpe,
            grid=grid, pre_norm=pre_norm, drop_rate=drop_rate, attn_drop=attn_drop_rate,
            qk_scale=qk_scale), depth)
        self.norm = snn.LayerNorm(embed) if pre_norm else nn.Identity()
        self.head = snn.Linear(embed, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (batch, patches, embed)
        x = self.norm(self.blocks(self.pos_embed(self.cls_token(x))))
        x = x[:, 1:].mean(dim=1) if self.global_pool else x[:, 0]
        return self.head(x)

    def supernet_refusal(self, strategy: str, differentiable: bool) -> str | None:
        """Why ``strategy`` cannot train this space as a supernet (``None``: it can)."""
        if not differentiable:
            return None
        return (
            f"{strategy} mixes every embedding width in one pass, but the class token and "
            "position embedding of each width are separate tensors that cannot be mixed; "
            "train AutoFormer with a path-sampling one-shot strategy (RandomOneShot, ENAS) "
            "or any multi-trial strategy"
        )

    @classmethod
    def searched(cls, name: str, **overrides: object) -> tuple[AutoFormer, Sample]:
        """``(space, sample)`` of a published network (``AUTOFORMER_ARCHS``)."""
        return searched_model(cls, AUTOFORMER_ARCHS, name, **overrides)


AutoformerSpace = AutoFormer
"""NNI's name for the same space."""


def _arch(embed: int, ratios: list[float], heads: list[int]) -> dict[str, object]:
    sample: dict[str, object] = {"embed_dim": embed, "depth": len(ratios)}
    for i, (r, h) in enumerate(zip(ratios, heads, strict=True)):
        sample[f"mlp_ratio_{i}"] = r
        sample[f"num_head_{i}"] = h
    return sample


_TRAINED = {"qkv_bias": True, "global_pool": True}

AUTOFORMER_ARCHS: dict[str, Searched] = {
    "autoformer-tiny": Searched(
        kwargs=_TRAINED, paper_params=5.7e6,
        source="AutoFormer-T (Chen et al., 2021, Table 3: 5.7M params, 1.3G FLOPs); NNI's "
               "'autoformer-tiny'",
        sample=_arch(192, [3.5, 3.5, 3.0, 3.5, 3.0, 3.0, 4.0, 4.0, 3.5, 4.0, 3.5, 4.0, 3.5],
                     [3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 3, 3])),
    "autoformer-small": Searched(
        kwargs={**_TRAINED, "search_embed_dim": (320, 384, 448), "search_num_heads": (5, 6, 7)},
        paper_params=22.9e6, source="AutoFormer-S (Table 3: 22.9M params); NNI's "
                                    "'autoformer-small'",
        sample=_arch(384, [3.0, 3.5, 3.0, 3.5, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 3.5, 4.0],
                     [6, 6, 5, 7, 5, 5, 5, 6, 6, 7, 7, 6, 7])),
}
"""The published AutoFormer networks, by NNI's names."""
