"""A decoder-only Transformer language model, in the spirit of nanoGPT.

One code path covers two families, chosen by ``ModelConfig.family``:

- ``"gpt2"``: learned position embeddings, LayerNorm (with bias), GELU (tanh approximation) MLP,
  tied input/output embeddings.
- ``"llama"``: rotary position embeddings (the "rotate half" layout Hugging Face stores), RMSNorm,
  SwiGLU MLP, grouped-query attention, optional Qwen2-style bias on q/k/v, tied or untied head.

Parameter names follow nanoGPT (``transformer.h.0.attn.c_attn.weight`` ...); q, k and v share one
fused projection and the SwiGLU gate and up projections share another, which is faster than three
(or two) separate matmuls. ``KVCache`` holds keys and values for incremental decoding of a batch
whose rows may have different lengths.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x by its positions' angles, in HF's "rotate half" layout.

    HF computes x * cos + rotate_half(x) * sin with rotate_half(x1, x2) = (-x2, x1); here the sign
    lives in the table (`sin` = (-sin, sin) on the two halves), so the rotation is one swap of the
    halves and no negation. Negation is exact, so the values are the same.

    Args:
        x: (B, T, n, hd) queries and/or keys.
        cos, sin: (B or 1, T, 1, hd) from `Transformer._rope`.
    Returns:
        (B, T, n, hd).
    """
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((x2, x1), dim=-1) * sin


class CausalSelfAttention(nn.Module):
    def __init__(self, config: "ModelConfig"):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.kv_heads, config.hd
        self.use_rope = config.family == "llama"
        qkv_bias = config.bias if config.family == "gpt2" else config.qkv_bias
        out_bias = config.bias if config.family == "gpt2" else False
        # q, k and v in one matmul: rows [q (n_head*hd); k (n_kv_head*hd); v (n_kv_head*hd)]
        qkv_dim = (self.n_head + 2 * self.n_kv_head) * self.head_dim
        self.c_attn = nn.Linear(config.n_embd, qkv_dim, bias=qkv_bias)
        self.c_proj = nn.Linear(self.n_head * self.head_dim, config.n_embd, bias=out_bias)
        self.dropout = config.dropout

    def forward(self, x, rope, layer_cache):
        B, T, _ = x.size()
        nh, nkv, hd = self.n_head, self.n_kv_head, self.head_dim
        qk, v = self.c_attn(x).split([(nh + nkv) * hd, nkv * hd], dim=2)
        qk = qk.view(B, T, nh + nkv, hd)
        if self.use_rope:
            qk = apply_rope(qk, *rope)  # queries and keys rotated together
        q = qk[:, :, :nh].transpose(1, 2)  # (B, nh, T, hd)
        k = qk[:, :, nh:].transpose(1, 2)  # (B, nkv, T, hd)
        v = v.view(B, T, nkv, hd).transpose(1, 2)  # (B, nkv, T, hd)
        mask, is_causal = None, T > 1
        if layer_cache is not None:
            # write the new keys/values into the cache, then (unless it was empty) attend over it
            k, v, mask, is_causal = layer_cache.update(k, v)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
            enable_gqa=nkv != nh,
        )  # (B, nh, T, hd)
        y = y.transpose(1, 2).reshape(B, T, nh * hd)  # re-assemble all head outputs side by side
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, config: "ModelConfig"):
        super().__init__()
        self.swiglu = config.family == "llama"
        hidden, bias = config.hidden_dim, config.bias and not self.swiglu
        # SwiGLU: gate and up projections fused as rows [gate; up]
        self.c_fc = nn.Linear(config.n_embd, 2 * hidden if self.swiglu else hidden, bias=bias)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        h = self.c_fc(x)  # (B, T, hidden) or (B, T, 2*hidden)
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate="tanh")
        h = self.c_proj(h)
        return self.dropout(h) if self.training and self.dropout.p else h


class Block(nn.Module):
    def __init__(self, config: "ModelConfig"):
        super().__init__()
        self.ln_1 = config.make_norm()
        self.attn = CausalSelfAttention(config)
        self.ln_2 = config.make_norm()
        self.mlp = MLP(config)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, rope, layer_cache):
        y = self.attn(self.ln_1(x), rope, layer_cache)
        if self.training and self.resid_dropout.p:
            y = self.resid_dropout(y)
        x = x + y
        x = x + self.mlp(self.ln_2(x))
        return x


@dataclass
class ModelConfig:
    family: str = "llama"  # "gpt2" | "llama"
    vocab_size: int = 512
    block_size: int = 1024  # max sequence length (learned positions for gpt2; RoPE limit for llama)
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int | None = None  # grouped-query attention; None means n_head
    n_embd: int = 128
    intermediate_size: int | None = None  # MLP hidden; None -> 4*n_embd (gpt2) / 8/3*n_embd (llama)
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    bias: bool = True  # gpt2 family: biases on linears and LayerNorm
    qkv_bias: bool = False  # llama family: Qwen2-style bias on q/k/v only
    tie_embeddings: bool = True
    head_dim: int | None = None  # None -> n_embd // n_head (some HF configs set it explicitly)
    dropout: float = 0.0  # on attention weights and residual branches, training only

    def __post_init__(self):
        if self.family not in ("gpt2", "llama"):
            raise ValueError(f"family must be 'gpt2' or 'llama', got {self.family!r}")
        if self.head_dim is None and self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.n_head % self.kv_heads:
            raise ValueError(
                f"n_head={self.n_head} is not a multiple of n_kv_head={self.n_kv_head}"
            )
        if self.family == "llama" and self.hd % 2:
            raise ValueError(f"RoPE needs an even head dimension, got {self.hd}")

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def hd(self) -> int:
        return self.head_dim or self.n_embd // self.n_head

    @property
    def hidden_dim(self) -> int:
        if self.intermediate_size:
            return self.intermediate_size
        if self.family == "gpt2":
            return 4 * self.n_embd
        return 64 * math.ceil(
            8 * self.n_embd / 3 / 64
        )  # SwiGLU keeps ~the 4x MLP's parameter count

    def make_norm(self) -> nn.Module:
        if self.family == "gpt2":
            return nn.LayerNorm(self.n_embd, eps=self.norm_eps, bias=self.bias)
        return nn.RMSNorm(self.n_embd, eps=self.norm_eps)


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        modules = dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=config.make_norm(),
        )
        if config.family == "gpt2":
            modules["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        # GPT-2 paper: scale the residual projections by 1/sqrt(2 * n_layer)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Count parameters (shared tensors once).

        Args:
            non_embedding: leave out the lookup-only tables: position embeddings, and the token
                embedding when it is not tied to the output head (tied, it does matmul work).
        Returns:
            The number of parameters.
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.transformer.wte.weight.numel()
        return n

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward), as nanoGPT/PaLM estimate them.

        Args:
            seq_len: sequence length T used in the attention term.
        Returns:
            6N + 12 * n_layer * n_head * head_dim * T, N = non-embedding parameters.
        """
        cfg = self.config
        return (
            6 * self.num_params(non_embedding=True)
            + 12 * cfg.n_layer * cfg.n_head * cfg.hd * seq_len
        )

    def new_cache(self, batch_size: int, max_len: int, device=None, dtype=None) -> "KVCache":
        """Allocate an empty KV cache for this model.

        Args:
            batch_size: number of rows (sequences).
            max_len: tokens each row can hold (at most block_size).
            device, dtype: default to the model's.
        Returns:
            A KVCache with all lengths 0.
        """
        cfg, p = self.config, self.lm_head.weight
        device, dtype = device or p.device, dtype or p.dtype
        max_len = min(max_len, cfg.block_size)
        return KVCache(cfg.n_layer, batch_size, cfg.kv_heads, max_len, cfg.hd, device, dtype)

    def _rope(self, pos: torch.Tensor, dtype: torch.dtype):
        """cos and signed sin (see `apply_rope`) at positions pos (B or 1, T): (B or 1, T, 1, hd).

        The fp32 table for every position up to block_size is built once per device and kept
        as a plain attribute, not a buffer, so model.to(bfloat16) cannot round it; entries are
        the same products and cos/sin as a per-call computation would give.
        """
        cfg, dev = self.config, pos.device
        table = self.__dict__.get("_rope_table")
        if table is None or table[0].device != dev:
            dims = torch.arange(0, cfg.hd, 2, device=dev).float() / cfg.hd
            inv_freq = 1.0 / cfg.rope_theta**dims  # (hd/2,)
            t = torch.arange(cfg.block_size, device=dev).float()
            freqs = t.unsqueeze(-1) * inv_freq  # (block_size, hd/2)
            cos, sin = freqs.cos(), freqs.sin()
            table = (torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1))  # (L, hd)
            self.__dict__["_rope_table"] = table
        # padding positions may run past the table; they are garbage anyway
        pos = pos.clamp(max=cfg.block_size - 1)
        cos, sin = (t[pos].unsqueeze(2) for t in table)  # (B or 1, T, 1, hd)
        if dtype != torch.float32:
            cos, sin = cos.to(dtype), sin.to(dtype)
        return cos, sin

    def forward(self, idx, targets=None, *, cache=None, valid_lengths=None, last_only=False):
        """Run the model.

        Args:
            idx: (B, T) int64 token ids.
            targets: (B, T) int64 next-token targets, -100 = ignored; gives the mean cross-entropy.
            cache: a KVCache from new_cache(); row b's tokens go to positions
                cache.lengths[b] + [0, T), and afterwards cache.lengths += valid_lengths (or T).
            valid_lengths: (B,) only the first valid_lengths[b] tokens of row b are real (right
                padding). Without a cache right padding needs nothing: causal attention never lets a
                real token see the padding after it.
            last_only: return logits only at each row's last real token, shape (B, 1, V); skips
                most of the output-layer work when only the next token is wanted.
        Returns:
            (logits, loss): logits (B, T, V) (or (B, 1, V)), loss a scalar tensor or None.
        """
        B, T = idx.size()
        cfg = self.config
        if cache is None:
            if T > cfg.block_size:  # noqa: SIM300 -- T is the sequence length, not a constant
                raise ValueError(f"sequence of length {T} exceeds block_size {cfg.block_size}")
            pos = torch.arange(T, device=idx.device).unsqueeze(0)  # (1, T)
            layer_caches = [None] * cfg.n_layer
        else:
            pos, layer_caches = cache.prepare(T, valid_lengths)  # pos (B, T)
        x = self.transformer.wte(idx)  # (B, T, C)
        rope = None
        if cfg.family == "gpt2":
            # padding positions may run past the table; they are garbage anyway
            x = x + self.transformer.wpe(pos.clamp(max=cfg.block_size - 1))
        else:
            rope = self._rope(pos, x.dtype)
        if self.training and cfg.dropout:
            x = self.transformer.drop(x)
        for block, layer_cache in zip(self.transformer.h, layer_caches):
            x = block(x, rope, layer_cache)
        x = self.transformer.ln_f(x)
        if cache is not None:
            cache.advance(T, valid_lengths)
        if last_only:
            if valid_lengths is None:
                x = x[:, -1:]  # (B, 1, C)
            else:
                last = valid_lengths.to(idx.device) - 1
                x = x[torch.arange(B, device=idx.device), last].unsqueeze(1)  # (B, 1, C)
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            if last_only:
                raise ValueError("targets need the logits of every position (last_only=False)")
            loss = F.cross_entropy(
                logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100
            )
        return logits, loss


class _LayerCache:
    """One layer's view of a KVCache during a single forward call."""

    def __init__(self, cache: "KVCache", layer: int):
        self.cache, self.layer = cache, layer

    def update(self, k, v):
        return self.cache._update(self.layer, k, v)


class KVCache:
    """Keys and values of past tokens for a batch of rows with individual lengths.

    Storage is (n_layer, B, n_kv_head, max_len + 1, head_dim); the extra slot at index max_len is a
    scratch sink for right-padding tokens, so they never overwrite real entries. Entries beyond a
    row's length are stale but finite (the buffers start at zero); causal masking hides them.
    """

    def __init__(self, n_layer, batch_size, n_kv_head, max_len, head_dim, device=None, dtype=None):
        shape = (n_layer, batch_size, n_kv_head, max_len + 1, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.lengths = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.max_len = max_len

    @property
    def batch_size(self) -> int:
        return self.k.size(1)

    def prepare(self, T, valid_lengths):
        """Plan one forward call of T new tokens per row (called by Transformer.forward).

        Args:
            T: number of new token slots per row.
            valid_lengths: (B,) real tokens per row, or None for all T.
        Returns:
            (pos, layer_caches): pos (B, T) absolute positions of the new tokens, and one
            per-layer handle whose update() writes k/v and returns what attention should use.
        """
        B, dev = self.batch_size, self.k.device
        # one host sync for all the shape decisions of this call
        if valid_lengths is None:
            lo, hi = torch.stack(torch.aminmax(self.lengths)).tolist()
            end = hi + T
        else:
            n_new = valid_lengths.to(dev)
            stats = torch.stack(
                [self.lengths.min(), self.lengths.max(), (self.lengths + n_new).max()]
            )
            lo, hi, end = stats.tolist()
        if end > self.max_len:
            raise ValueError(
                f"KV cache overflow: a row needs {end} positions, max_len={self.max_len}"
            )
        pos = self.lengths.unsqueeze(1) + torch.arange(T, device=dev)  # (B, T)
        self._T, self._lo, self._hi, self._end = T, lo, hi, end
        self._uniform = lo == hi and valid_lengths is None
        if not self._uniform:
            self._rows = torch.arange(B, device=dev).unsqueeze(1)  # (B, 1)
            self._write_pos = pos  # (B, T)
            if valid_lengths is not None:
                # padding tokens are written to the scratch slot at index max_len
                real = torch.arange(T, device=dev) < n_new.unsqueeze(1)  # (B, T)
                self._write_pos = torch.where(real, pos, self.max_len)  # (B, T)
        self._mask = None
        if hi > 0 and not (self._uniform and T == 1):
            # new token at position p of row b sees keys 0..p: the row's past plus its causal prefix
            keys = torch.arange(end, device=dev)
            self._mask = (keys <= pos.unsqueeze(-1)).unsqueeze(1)  # (B, 1, T, end)
        layers = self.__dict__.get("_layers")
        if layers is None or layers[0].cache is not self:  # none yet, or copied from another
            layers = self._layers = [_LayerCache(self, i) for i in range(self.k.size(0))]
        return pos, layers

    def _update(self, layer, k, v):
        # k, v: (B, nkv, T, hd) for the new tokens
        T = self._T
        kc, vc = self.k[layer], self.v[layer]  # (B, nkv, max_len + 1, hd)
        if self._uniform:
            kc[:, :, self._lo : self._lo + T] = k
            vc[:, :, self._lo : self._lo + T] = v
        else:
            kc[self._rows, :, self._write_pos] = k.transpose(1, 2)  # indexed as (B, T, nkv, hd)
            vc[self._rows, :, self._write_pos] = v.transpose(1, 2)
        if self._hi == 0:
            return k, v, None, T > 1  # empty cache: plain causal attention over the new tokens
        return kc[:, :, : self._end], vc[:, :, : self._end], self._mask, False

    def advance(self, T, valid_lengths):
        """Add the tokens of the last forward call to the row lengths."""
        self.lengths += T if valid_lengths is None else valid_lengths.to(self.lengths.device)

    def reorder(self, index):
        """Keep rows `index` (beam search): row i becomes old row index[i].

        Args:
            index: (B',) int64 row indices; B' may differ from B.
        """
        index = torch.as_tensor(index, device=self.k.device)
        if index.numel() == self.batch_size:
            # the usual beam step: move only the used prefix, in place
            end = int(self.lengths.max())
            self.k[:, :, :, :end] = self.k[:, index, :, :end]
            self.v[:, :, :, :end] = self.v[:, index, :, :end]
        else:
            self.k = self.k.index_select(1, index)
            self.v = self.v.index_select(1, index)
        self.lengths = self.lengths.index_select(0, index)

    def reset_row(self, b: int):
        """Free row b (its length becomes 0; old entries are left and later overwritten)."""
        self.lengths[b] = 0

    def copy_row_from(self, b: int, other: "KVCache", ob: int):
        """Copy row ob of another cache (e.g. a batch-1 prefill) into row b of this one.

        Args:
            b: destination row here.
            other: source cache with the same layers, heads and head size.
            ob: source row there.
        """
        n = int(other.lengths[ob])
        if n > self.max_len:
            raise ValueError(f"row of length {n} does not fit max_len={self.max_len}")
        self.k[:, b, :, :n] = other.k[:, ob, :, :n]
        self.v[:, b, :, :n] = other.v[:, ob, :, :n]
        self.lengths[b] = n
