"""The supported families, one declaration each. Adding a family is one more block here."""
from dataclasses import replace

from .base import Adapter, register_adapter

LLAMA = register_adapter(Adapter(
    name="Llama / Mistral / Qwen2 / Qwen3 / SmolLM",
    model_types=("llama", "mistral", "qwen2", "qwen3", "smollm3"),
    layers="model.layers", final_norm="model.norm", unembed="lm_head",
    attn="self_attn", mlp="mlp",
    attn_out_proj="self_attn.o_proj", mlp_out_proj="mlp.down_proj",
    attn_norm="input_layernorm", mlp_norm="post_attention_layernorm", mlp_key="mlp.gate_proj",
    attn_key="self_attn.k_proj",
))

# Llama's layout, but its norms are LayerNorms without weight or bias (mean-centred, unlike RMSNorm)
OLMO = register_adapter(replace(LLAMA, name="OLMo", model_types=("olmo",), norm_kind="layer"))

GEMMA = register_adapter(Adapter(
    name="Gemma",
    model_types=("gemma",),
    layers="model.layers", final_norm="model.norm", unembed="lm_head",
    attn="self_attn", mlp="mlp",
    attn_out_proj="self_attn.o_proj", mlp_out_proj="mlp.down_proj",
    attn_norm="input_layernorm", mlp_norm="post_attention_layernorm", mlp_key="mlp.gate_proj",
    attn_key="self_attn.k_proj", norm_offset=1.0,
))

GEMMA2 = register_adapter(Adapter(
    name="Gemma 2 / Gemma 3",
    model_types=("gemma2", "gemma3_text"),
    layers="model.layers", final_norm="model.norm", unembed="lm_head",
    attn="self_attn", mlp="mlp",
    attn_out_proj="self_attn.o_proj", mlp_out_proj="mlp.down_proj",
    attn_norm="input_layernorm", mlp_norm="pre_feedforward_layernorm", mlp_key="mlp.gate_proj",
    attn_post_norm="post_attention_layernorm", mlp_post_norm="post_feedforward_layernorm",
    attn_key="self_attn.k_proj", norm_offset=1.0,
))

# Gemma 2's post-norms, but no pre-norms (each sub-layer reads the stream itself) and plain RMSNorm gains
OLMO2 = register_adapter(replace(GEMMA2, name="OLMo 2 / OLMo 3", model_types=("olmo2", "olmo3"),
                                 attn_norm=None, mlp_norm=None, norm_offset=0.0))

PHI3 = register_adapter(Adapter(
    name="Phi-3",
    model_types=("phi3",),
    layers="model.layers", final_norm="model.norm", unembed="lm_head",
    attn="self_attn", mlp="mlp",
    attn_out_proj="self_attn.o_proj", mlp_out_proj="mlp.down_proj",
    attn_norm="input_layernorm", mlp_norm="post_attention_layernorm",
    mlp_key="mlp.gate_up_proj", mlp_key_rows="first_half",
    attn_key="self_attn.qkv_proj", attn_key_columns="qkv",
))

GPT2 = register_adapter(Adapter(
    name="GPT-2",
    model_types=("gpt2",),
    layers="transformer.h", final_norm="transformer.ln_f", unembed="lm_head",
    attn="attn", mlp="mlp",
    attn_out_proj="attn.c_proj", mlp_out_proj="mlp.c_proj",
    attn_norm="ln_1", mlp_norm="ln_2", mlp_key="mlp.c_fc",
    attn_key="attn.c_attn", attn_key_columns="qkv",
    embeddings=(("embed", "transformer.wte"), ("pos_embed", "transformer.wpe")),
    norm_kind="layer",
))

GPT_NEOX = register_adapter(Adapter(
    name="GPT-NeoX / Pythia",
    model_types=("gpt_neox",),
    layers="gpt_neox.layers", final_norm="gpt_neox.final_layer_norm", unembed="lm_head|embed_out",
    attn="attention", mlp="mlp",
    attn_out_proj="attention.dense", mlp_out_proj="mlp.dense_4h_to_h",
    attn_norm="input_layernorm", mlp_norm="post_attention_layernorm", mlp_key="mlp.dense_h_to_4h",
    attn_key="attention.query_key_value", attn_key_columns="qkv_per_head", norm_kind="layer",
    parallel_residual=lambda config: getattr(config, "use_parallel_residual", True),
))
