"""GPU path check: exactness and overhead of decompose / logit lens on CUDA.

Random models with SmolLM2-135M's shape (no weights needed): fp32 and bf16, plus a Gemma-2-shaped
model for soft-caps and post-norms. Run: python benchmarks/gpu_check.py (needs a CUDA device).
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import transformers as tf

import resid_widgets as rw


def timed(fn, reps=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def smollm2_shaped(dtype):
    cfg = tf.LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                         tie_word_embeddings=True)
    torch.manual_seed(0)
    return tf.LlamaForCausalLM(cfg).to("cuda", dtype).eval()


def gemma2_shaped(dtype):
    cfg = tf.Gemma2Config(vocab_size=32000, hidden_size=256, intermediate_size=1024, num_hidden_layers=6,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                          final_logit_softcapping=30.0, attn_logit_softcapping=50.0)
    torch.manual_seed(0)
    return tf.Gemma2ForCausalLM(cfg).to("cuda", dtype).eval()


def main():
    print(torch.__version__, tf.__version__, torch.cuda.get_device_name())
    rows = []
    for name, make in (("SmolLM2-shaped Llama", smollm2_shaped), ("Gemma-2-shaped", gemma2_shaped)):
        for dtype in (torch.float32, torch.bfloat16):
            model = make(dtype)
            for T in (64, 256):
                ids = torch.randint(0, model.config.vocab_size, (T,))
                dec = rw.decompose(model, ids)
                with torch.no_grad():
                    ref = model(ids[None].cuda()).logits[0].float().cpu()
                logit_err = float((dec.logits - ref).abs().max())
                lens_err = float((dec.readout.logits(dec.states[-1]).cpu() - ref).abs().max())
                target = dec.top_prediction(-1)
                dla = dec.contributions(target, -1, "dla")
                heads = dec.head_contributions(target, -1, "dla")
                head_gap = float((heads.sum(1) - dla[[dec.attn_index(l) for l in range(dec.n_layers)]]).abs().max())
                plain = timed(lambda: model(ids[None].cuda(), use_cache=False))
                full = timed(lambda: rw.decompose(model, ids), reps=10)
                flat = dec.states.reshape(-1, dec.d_model).cuda()
                W = dec.readout.unembed
                gemm = timed(lambda: flat @ W.t())
                lens = timed(lambda: (dec._lens_cache.clear(), dec.logit_lens(k=10)), reps=10)
                rows.append((name, str(dtype).split(".")[1], T, f"{dec.additivity_error:.1e}", f"{logit_err:.1e}",
                             f"{lens_err:.1e}", f"{head_gap:.1e}", f"{full / plain:.2f}x", f"{lens / gemm:.2f}x",
                             f"{plain * 1e3:.1f}", f"{gemm * 1e3:.2f}"))
                assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    head = ("model", "dtype", "T", "additivity", "logits err", "lens(final) err", "heads vs attn DLA",
            "decompose / forward", "lens / GEMM", "forward ms", "GEMM ms")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(map(str, r)) + " |")


if __name__ == "__main__":
    main()
