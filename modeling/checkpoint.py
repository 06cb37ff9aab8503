"""Model directories: save, load, inspect, and import from Hugging Face.

A model directory holds:

- ``config.json``: the ModelConfig fields (configs saved before a field existed still load),
- ``model.safetensors``: the weights (a tied output head is stored once, as the embedding),
- ``tokenizer.json``: the tokenizer,
- ``meta.json``: free-form lineage and metrics plus ``format_version``,
- optionally ``tokenizer_config.json`` (an imported model's chat template),
  ``generation_config.json`` and ``special_tokens_map.json``, copied from where the model came from.

Directories are written next to their destination under a temporary name and renamed into place, so
a crash never leaves a half-written model where a reader could find it. `publish_dir` (and the
``exclusive`` option of the writers) never replaces an existing directory: the registry's model
versions are published that way.
"""

import dataclasses
import json
import math
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from modeling.dirs import CheckpointError, publish_dir, write_dir_atomically
from modeling.generation_config import recommended_sampling
from modeling.model import ModelConfig, Transformer

__all__ = ["CheckpointError", "publish_dir"]  # re-exported: callers import them from here

FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, META_FILE = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "meta.json",
)
# transformers >= 5 writes the chat template to chat_template.jinja, older ones into
# tokenizer_config.json: carry both.
AUX_FILES = (
    "tokenizer_config.json",
    "chat_template.jinja",
    "generation_config.json",
    "special_tokens_map.json",
)


def _weights_for_disk(model: Transformer) -> dict[str, torch.Tensor]:
    sd = model.state_dict()
    if model.config.tie_embeddings:
        sd.pop(
            "lm_head.weight"
        )  # same storage as transformer.wte.weight; safetensors wants it once
    return {k: v.detach().contiguous().cpu() for k, v in sd.items()}


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_model(
    model: Transformer,
    tokenizer,
    path,
    meta: dict | None = None,
    copy_from=None,
    exclusive: bool = False,
) -> Path:
    """Write a model directory atomically (temp dir in the same parent, then rename).

    Args:
        model: the Transformer to save (weights are saved in their current dtype).
        tokenizer: has save(dir) writing tokenizer.json (a modeling.tokenizer.Tokenizer).
        path: destination directory; an existing one is replaced only once the new one is complete.
        meta: free-form JSON-able lineage/metrics; "format_version" is added.
        copy_from: optional model directory whose auxiliary files (chat template in
            tokenizer_config.json, generation_config.json, special_tokens_map.json) are carried
            over, e.g. from the base model of a fine-tune.
        exclusive: refuse (CheckpointError) instead of replacing an existing `path`.
    Returns:
        The resolved destination path.
    """
    meta = {**(meta or {}), "format_version": FORMAT_VERSION}

    def write(tmp: Path):
        _write_json(tmp / CONFIG_FILE, dataclasses.asdict(model.config))
        save_file(_weights_for_disk(model), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        tokenizer.save(tmp)
        if not (tmp / TOKENIZER_FILE).is_file():
            raise CheckpointError(f"tokenizer.save() did not write {TOKENIZER_FILE}")
        if copy_from is not None:
            for name in AUX_FILES:
                if (Path(copy_from) / name).is_file():
                    shutil.copyfile(Path(copy_from) / name, tmp / name)
        _write_json(tmp / META_FILE, meta)

    return write_dir_atomically(path, write, exclusive=exclusive)


# ----------------------------------------------------------------------------- reading


def _require(path: Path, name: str) -> Path:
    f = path / name
    if not f.is_file():
        raise CheckpointError(f"{f}: missing (a model directory needs {name})")
    return f


def _read_json(f: Path) -> dict:
    try:
        obj = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{f}: unreadable JSON ({e})") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{f}: expected a JSON object")
    return obj


def load_config(path) -> ModelConfig:
    """Read config.json of a model directory.

    Args:
        path: the model directory.
    Returns:
        The ModelConfig; fields missing from older files take their defaults.
    Raises:
        CheckpointError: file missing or unreadable, unknown key, or invalid values.
    """
    f = _require(Path(path), CONFIG_FILE)
    raw = _read_json(f)
    known = {fld.name for fld in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise CheckpointError(f"{f}: unknown config key(s) {unknown}; known keys: {sorted(known)}")
    try:
        return ModelConfig(**raw)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{f}: invalid config ({e})") from e


def _read_safetensors(f: Path, device="cpu") -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(f), framework="pt", device=str(device)) as st:
            return {k: st.get_tensor(k) for k in st.keys()}  # noqa: SIM118 -- not a dict
    except Exception as e:  # safetensors raises its own error types for corrupt/truncated files
        raise CheckpointError(f"{f}: corrupt or truncated safetensors file ({e})") from e


def _safetensors_header(f: Path) -> dict:
    # the format: 8-byte little-endian header size, then a JSON header with dtype/shape per tensor
    try:
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if n <= 0 or n > 100_000_000:
                raise ValueError(f"bad header size {n}")
            header = json.loads(fh.read(n))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{f}: corrupt safetensors header ({e})") from e
    header.pop("__metadata__", None)
    return header


def load_model(path, device="cpu", dtype=None):
    """Load a model directory.

    Args:
        path: the model directory.
        device: where to put the weights.
        dtype: optional dtype to cast the weights to (default: as stored).
    Returns:
        (model, tokenizer, meta): the Transformer in eval mode, a modeling.tokenizer.Tokenizer and
        the meta.json dict.
    Raises:
        CheckpointError: naming the missing/corrupt file, the mismatching tensor, or the bad key.
    """
    from modeling.tokenizer import Tokenizer  # imported late: checkpoint inspection doesn't need it

    path = Path(path)
    config = load_config(path)
    weights_file = _require(path, WEIGHTS_FILE)
    tok_file = _require(path, TOKENIZER_FILE)
    meta = _read_json(_require(path, META_FILE))
    sd = _read_safetensors(weights_file, device)

    with torch.device("meta"):  # build the skeleton without allocating or initialising weights
        model = Transformer(config)
    expected = _weights_for_disk_shapes(model)
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{weights_file}: tensors do not match config.json: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}"
        )
    for k, shape in expected.items():
        if tuple(sd[k].shape) != shape:
            raise CheckpointError(
                f"{weights_file}: tensor {k} has shape {tuple(sd[k].shape)}, "
                f"config.json implies {shape}"
            )
    if dtype is not None:
        sd = {k: v.to(dtype) for k, v in sd.items()}
    model.load_state_dict(sd, strict=False, assign=True)
    if config.tie_embeddings:
        model.lm_head.weight = model.transformer.wte.weight
    model.eval()
    try:
        tokenizer = Tokenizer.load(path)
    except Exception as e:
        raise CheckpointError(f"{tok_file}: cannot load tokenizer ({e})") from e
    return model, tokenizer, meta


def _weights_for_disk_shapes(model: Transformer) -> dict[str, tuple]:
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        shapes.pop("lm_head.weight")
    return shapes


def model_info(path) -> dict:
    """Describe a model directory cheaply: reads JSON files and the safetensors header only.

    Args:
        path: the model directory.
    Returns:
        dict with family, n_params, n_layer, n_embd, n_head, vocab_size, block_size, dtype,
        size_bytes (all files), config (dict) and meta (dict).
    """
    path = Path(path)
    config = load_config(path)
    header = _safetensors_header(_require(path, WEIGHTS_FILE))
    n_params = sum(math.prod(t["shape"]) for t in header.values())
    dtypes = sorted({t["dtype"] for t in header.values()})
    meta_file = path / META_FILE
    return {
        "family": config.family,
        "n_params": n_params,
        "n_layer": config.n_layer,
        "n_embd": config.n_embd,
        "n_head": config.n_head,
        "vocab_size": config.vocab_size,
        "block_size": config.block_size,
        "dtype": ",".join(dtypes),
        "size_bytes": sum(f.stat().st_size for f in path.iterdir() if f.is_file()),
        "config": dataclasses.asdict(config),
        "meta": _read_json(meta_file) if meta_file.is_file() else {},
    }


# ----------------------------------------------------------------------------- Hugging Face import


def _hf_tensors(src: Path) -> dict[str, torch.Tensor]:
    """All tensors of an HF checkpoint: model.safetensors, sharded safetensors or .bin."""
    single = src / "model.safetensors"
    if single.is_file():
        return _read_safetensors(single)
    index = src / "model.safetensors.index.json"
    if index.is_file():
        out = {}
        for shard in sorted(set(_read_json(index).get("weight_map", {}).values())):
            out.update(_read_safetensors(_require(src, shard)))
        return out
    pt = src / "pytorch_model.bin"
    if pt.is_file():
        try:
            return torch.load(pt, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"{pt}: cannot read ({e})") from e
    raise CheckpointError(f"{src}: no model.safetensors (or index / pytorch_model.bin) found")


# The ModelConfig fields every HF config.json must give, and the key each family calls them by.
_GPT2_KEYS = {
    "vocab_size": "vocab_size",
    "n_layer": "n_layer",
    "n_head": "n_head",
    "n_embd": "n_embd",
}
_LLAMA_KEYS = {
    "vocab_size": "vocab_size",
    "n_layer": "num_hidden_layers",
    "n_head": "num_attention_heads",
    "n_embd": "hidden_size",
    "intermediate_size": "intermediate_size",
}


def _required(hf: dict, keys: dict[str, str]) -> dict:
    """ModelConfig field -> value for the keys HF must have (a KeyError names a missing one)."""
    return {ours: hf[theirs] for ours, theirs in keys.items()}


def _gpt2_import(hf: dict, cfg_file: Path, w: dict) -> tuple[ModelConfig, dict]:
    if hf.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        raise CheckpointError(f"{cfg_file}: unsupported activation {hf['activation_function']!r}")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if hf.get(flag):
            raise CheckpointError(f"{cfg_file}: unsupported option {flag}=true")
    config = ModelConfig(
        family="gpt2",
        **_required(hf, _GPT2_KEYS),
        block_size=hf.get("n_positions", 1024),
        intermediate_size=hf.get("n_inner"),
        norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        bias=True,
        tie_embeddings=hf.get("tie_word_embeddings", True),
    )
    # GPT2LMHeadModel.state_dict() says "transformer.wte.weight", the hub file says "wte.weight"
    w = {k.removeprefix("transformer."): v for k, v in w.items()}
    w = {k: v for k, v in w.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    sd = {}
    for k, v in w.items():
        if k == "lm_head.weight":
            if not config.tie_embeddings:
                sd[k] = v
            continue
        # Conv1D stores (in, out): transpose to nn.Linear's (out, in)
        if k.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
            v = v.t()
        sd["transformer." + k] = v.contiguous()
    return config, sd


def _llama_import(hf: dict, cfg_file: Path, w: dict) -> tuple[ModelConfig, dict]:
    if hf.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"{cfg_file}: unsupported hidden_act {hf['hidden_act']!r}")
    # transformers 5 writes rope_parameters (with rope_theta inside), 4.x rope_scaling + rope_theta
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type")) not in (None, "default"):
        raise CheckpointError(f"{cfg_file}: unsupported RoPE scaling {rope}")
    if hf.get("mlp_bias") or (hf.get("attention_bias") and hf.get("model_type") != "qwen2"):
        raise CheckpointError(
            f"{cfg_file}: o_proj/MLP biases (attention_bias/mlp_bias) unsupported"
        )
    rope_theta = hf.get("rope_theta") or rope.get("rope_theta") or 10000.0
    config = ModelConfig(
        family="llama",
        **_required(hf, _LLAMA_KEYS),
        block_size=hf.get("max_position_embeddings", 2048),
        n_kv_head=hf.get("num_key_value_heads") or hf["num_attention_heads"],
        rope_theta=float(rope_theta),
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        bias=False,
        qkv_bias=hf.get("model_type") == "qwen2" or "model.layers.0.self_attn.q_proj.bias" in w,
        tie_embeddings=hf.get("tie_word_embeddings", False),
        head_dim=hf.get("head_dim"),
    )

    def get(name):
        if name not in w:
            raise CheckpointError(f"{cfg_file.parent}: weights lack tensor {name}")
        return w[name]

    sd = {
        "transformer.wte.weight": get("model.embed_tokens.weight"),
        "transformer.ln_f.weight": get("model.norm.weight"),
    }
    if not config.tie_embeddings:
        sd["lm_head.weight"] = get("lm_head.weight")
    for i in range(config.n_layer):
        src, dst = f"model.layers.{i}.", f"transformer.h.{i}."
        qkv = [get(f"{src}self_attn.{p}_proj.weight") for p in "qkv"]
        sd[dst + "attn.c_attn.weight"] = torch.cat(qkv, dim=0)
        if config.qkv_bias:
            sd[dst + "attn.c_attn.bias"] = torch.cat(
                [get(f"{src}self_attn.{p}_proj.bias") for p in "qkv"]
            )
        sd[dst + "attn.c_proj.weight"] = get(src + "self_attn.o_proj.weight")
        gate_up = [get(src + "mlp.gate_proj.weight"), get(src + "mlp.up_proj.weight")]
        sd[dst + "mlp.c_fc.weight"] = torch.cat(gate_up, dim=0)
        sd[dst + "mlp.c_proj.weight"] = get(src + "mlp.down_proj.weight")
        sd[dst + "ln_1.weight"] = get(src + "input_layernorm.weight")
        sd[dst + "ln_2.weight"] = get(src + "post_attention_layernorm.weight")
    return config, sd


LLAMA_LIKE = ("llama", "qwen2", "mistral", "smollm", "smollm3")


def import_hf(src_dir, dst_dir, exclusive: bool = False) -> Path:
    """Convert a local Hugging Face model directory to our model directory.

    Supports GPT-2 (model_type "gpt2", with or without the "transformer." key prefix) and the Llama
    family ("llama", "mistral", "qwen2" with its q/k/v biases); weights from model.safetensors
    (single or sharded) or pytorch_model.bin, kept in their stored dtype. Copies tokenizer.json
    (or builds one from GPT-2's vocab.json + merges.txt) and the auxiliary files that carry the chat
    template and generation defaults.

    Args:
        src_dir: the HF directory (as written by save_pretrained / downloaded from the hub).
        dst_dir: our model directory to create (replaced atomically if it exists).
        exclusive: refuse (CheckpointError) instead of replacing an existing `dst_dir`.
    Returns:
        The resolved destination path.
    Raises:
        CheckpointError: unsupported model type/options, or a missing/corrupt file (named).
    """
    src = Path(src_dir).resolve()
    cfg_file = _require(src, "config.json")
    hf = _read_json(cfg_file)
    model_type = hf.get("model_type")
    w = _hf_tensors(src)
    try:
        if model_type == "gpt2":
            config, sd = _gpt2_import(hf, cfg_file, w)
        elif model_type in LLAMA_LIKE:
            config, sd = _llama_import(hf, cfg_file, w)
        else:
            raise CheckpointError(f"{cfg_file}: unsupported model_type {model_type!r}")
    except KeyError as e:
        raise CheckpointError(f"{cfg_file}: missing key {e}") from e

    with torch.device("meta"):
        expected = _weights_for_disk_shapes(Transformer(config))
    if set(expected) != set(sd):
        missing, extra = sorted(set(expected) - set(sd)), sorted(set(sd) - set(expected))
        raise CheckpointError(f"{src}: weights do not match: missing {missing}, unexpected {extra}")
    for k, shape in expected.items():
        if tuple(sd[k].shape) != shape:
            raise CheckpointError(
                f"{src}: tensor for {k} has shape {tuple(sd[k].shape)}, want {shape}"
            )

    def write(tmp: Path):
        _write_json(tmp / CONFIG_FILE, dataclasses.asdict(config))
        save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp / WEIGHTS_FILE))
        if (src / TOKENIZER_FILE).is_file():
            shutil.copyfile(src / TOKENIZER_FILE, tmp / TOKENIZER_FILE)
        elif (src / "vocab.json").is_file() and (src / "merges.txt").is_file():
            _tokenizer_json_from_bpe_files(src, tmp / TOKENIZER_FILE)
        else:
            raise CheckpointError(
                f"{src / TOKENIZER_FILE}: missing (no vocab.json/merges.txt either)"
            )
        for name in AUX_FILES:
            if (src / name).is_file():
                shutil.copyfile(src / name, tmp / name)
        if not (tmp / "generation_config.json").is_file() and hf.get("eos_token_id") is not None:
            # our config.json replaces HF's, which held the stop ids: keep them where chat reads
            _write_json(tmp / "generation_config.json", {"eos_token_id": hf["eos_token_id"]})
        try:  # read now, so a malformed generation_config.json fails the import, not a chat
            generation = recommended_sampling(tmp)
        except ValueError as e:
            raise CheckpointError(str(e).replace(str(tmp), str(src))) from e
        meta = {"source": "hf", "hf_model_type": model_type, "imported_from": str(src)}
        meta["recommended_sampling"] = generation
        _write_json(tmp / META_FILE, {**meta, "format_version": FORMAT_VERSION})

    return write_dir_atomically(dst_dir, write, exclusive=exclusive)


def _tokenizer_json_from_bpe_files(src: Path, out: Path) -> None:
    """Old GPT-2 directories ship only vocab.json + merges.txt: build the tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    bpe = models.BPE.from_file(str(src / "vocab.json"), str(src / "merges.txt"))
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.save(str(out))
