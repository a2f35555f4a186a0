"""Small randomly initialised models of every supported family (no downloads)."""
from __future__ import annotations

import torch
import transformers as tf

VOCAB = 97
COMMON = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
              num_attention_heads=4, max_position_embeddings=64)


def _configs():
    return {
        "gpt2": lambda: tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4,
                                                         n_positions=64, n_inner=64)),
        "gpt_neox_parallel": lambda: tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(**COMMON, use_parallel_residual=True)),
        "gpt_neox_sequential": lambda: tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(**COMMON, use_parallel_residual=False)),
        "llama": lambda: tf.LlamaForCausalLM(tf.LlamaConfig(**COMMON, num_key_value_heads=2)),
        "mistral": lambda: tf.MistralForCausalLM(tf.MistralConfig(**COMMON, num_key_value_heads=2)),
        "qwen2": lambda: tf.Qwen2ForCausalLM(tf.Qwen2Config(**COMMON, num_key_value_heads=2)),
        "qwen3": lambda: tf.Qwen3ForCausalLM(tf.Qwen3Config(**COMMON, num_key_value_heads=2, head_dim=8)),
        "gemma": lambda: tf.GemmaForCausalLM(tf.GemmaConfig(**COMMON, num_key_value_heads=1, head_dim=8)),
        "gemma2": lambda: tf.Gemma2ForCausalLM(tf.Gemma2Config(**COMMON, num_key_value_heads=2, head_dim=8,
                                                               final_logit_softcapping=5.0,
                                                               attn_logit_softcapping=20.0)),
        "gemma3": lambda: tf.Gemma3ForCausalLM(tf.Gemma3TextConfig(**COMMON, num_key_value_heads=2, head_dim=8)),
        "phi3": lambda: tf.Phi3ForCausalLM(tf.Phi3Config(**COMMON, num_key_value_heads=4, pad_token_id=0)),
        "olmo": lambda: tf.OlmoForCausalLM(tf.OlmoConfig(**COMMON, num_key_value_heads=2, pad_token_id=0)),
        "olmo2": lambda: tf.Olmo2ForCausalLM(tf.Olmo2Config(**COMMON, num_key_value_heads=2, pad_token_id=0)),
        # OLMo 3 came with transformers 4.57: left out where the installed release predates it
        **({"olmo3": lambda: tf.Olmo3ForCausalLM(tf.Olmo3Config(**COMMON, num_key_value_heads=2, pad_token_id=0,
                                                                sliding_window=4))}
           if hasattr(tf, "Olmo3ForCausalLM") else {}),
    }


FAMILIES = list(_configs())


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Random init leaves norms at 1 / 0 and biases at 0: perturb them so the tests see them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def build(family: str, seed: int = 0) -> torch.nn.Module:
    """A tiny random model of ``family`` in eval mode, fp32."""
    torch.manual_seed(seed)
    model = _configs()[family]()
    _perturb(model, seed)
    return model.eval()


def sliding_window_model(family: str, window: int = 3) -> torch.nn.Module:
    """A tiny random model whose layers (all, or some) attend within ``window`` tokens: "mistral",
    "gemma2" (with attention soft-caps), "gemma3", "qwen2" (layer 0 attends to everything)."""
    configs = {
        "mistral": lambda: tf.MistralForCausalLM(tf.MistralConfig(**COMMON, num_key_value_heads=2, sliding_window=window)),
        "gemma2": lambda: tf.Gemma2ForCausalLM(tf.Gemma2Config(**COMMON, num_key_value_heads=2, head_dim=8,
                                                               sliding_window=window, attn_logit_softcapping=5.0)),
        "gemma3": lambda: tf.Gemma3ForCausalLM(tf.Gemma3TextConfig(**COMMON, num_key_value_heads=2, head_dim=8,
                                                                   sliding_window=window)),
        "qwen2": lambda: tf.Qwen2ForCausalLM(tf.Qwen2Config(**COMMON, num_key_value_heads=2, sliding_window=window,
                                                            use_sliding_window=True, max_window_layers=1)),
    }
    torch.manual_seed(0)
    return configs[family]().eval()


def random_ids(n: int = 11, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, VOCAB, (n,), generator=torch.Generator().manual_seed(seed))


def word_tokenizer(n_tokens: int, bos: str = "w1", eos: str = "w2"):
    """A word-level tokenizer of ``n_tokens`` tokens "w0" (unknown), "w1", ... (no downloads)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    backend = Tokenizer(models.WordLevel({f"w{i}": i for i in range(n_tokens)}, unk_token="w0"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return tf.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="w0", bos_token=bos, eos_token=eos)
