"""The supported families, one declaration each. Adding a family is one more block here."""
from .base import Adapter, register_adapter

LLAMA = register_adapter(Adapter(
    name="Llama / Mistral / Qwen2 / Qwen3 / SmolLM",
    model_types=("llama", "mistral", "qwen2", "qwen3", "smollm3", "olmo"),
    layers="model.layers", final_norm="model.norm", unembed="lm_head",
    attn="self_attn", mlp="mlp",
    attn_out_proj="self_attn.o_proj", mlp_out_proj="mlp.down_proj",
    attn_norm="input_layernorm", mlp_norm="post_attention_layernorm", mlp_key="mlp.gate_proj",
))

GEMMA = register_adapter(Adapter(
    name="Gemma",
    model_types=("gemma",),
    layers="model.layers", final_norm="model.norm", unembed="lm_head",
    attn="self_attn", mlp="mlp",
    attn_out_proj="self_attn.o_proj", mlp_out_proj="mlp.down_proj",
    attn_norm="input_layernorm", mlp_norm="post_attention_layernorm", mlp_key="mlp.gate_proj",
    norm_offset=1.0,
))

GEMMA2 = register_adapter(Adapter(
    name="Gemma 2 / Gemma 3",
    model_types=("gemma2", "gemma3_text"),
    layers="model.layers", final_norm="model.norm", unembed="lm_head",
    attn="self_attn", mlp="mlp",
    attn_out_proj="self_attn.o_proj", mlp_out_proj="mlp.down_proj",
    attn_norm="input_layernorm", mlp_norm="pre_feedforward_layernorm", mlp_key="mlp.gate_proj",
    attn_post_norm="post_attention_layernorm", mlp_post_norm="post_feedforward_layernorm",
    norm_offset=1.0,
))

PHI3 = register_adapter(Adapter(
    name="Phi-3",
    model_types=("phi3",),
    layers="model.layers", final_norm="model.norm", unembed="lm_head",
    attn="self_attn", mlp="mlp",
    attn_out_proj="self_attn.o_proj", mlp_out_proj="mlp.down_proj",
    attn_norm="input_layernorm", mlp_norm="post_attention_layernorm",
    mlp_key="mlp.gate_up_proj", mlp_key_rows="first_half",
))

GPT2 = register_adapter(Adapter(
    name="GPT-2",
    model_types=("gpt2",),
    layers="transformer.h", final_norm="transformer.ln_f", unembed="lm_head",
    attn="attn", mlp="mlp",
    attn_out_proj="attn.c_proj", mlp_out_proj="mlp.c_proj",
    attn_norm="ln_1", mlp_norm="ln_2", mlp_key="mlp.c_fc",
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
    norm_kind="layer",
    parallel_residual=lambda config: getattr(config, "use_parallel_residual", True),
))
