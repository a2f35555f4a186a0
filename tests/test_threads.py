"""Runs of one model from several threads take turns (one lock per model): each gets the numbers
of a run on its own, and the model is left as found (hooks, train/eval flags, attention
implementation). Before, each run's hooks fired in the other's forward."""
import threading

import pytest
import torch

import resid_widgets as rw
from resid_widgets.attention_capture import attention_implementation
from models_zoo import build, random_ids

A = rw.analysis
ROUNDS = 6


def _run_together(jobs: dict) -> tuple[dict, list]:
    """Run each job ROUNDS times in its own thread, all starting at once; (results, errors)."""
    results, errors = {}, []
    start = threading.Barrier(len(jobs))

    def loop(name, job):
        try:
            start.wait()
            results[name] = [job() for _ in range(ROUNDS)]
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(f"{name}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=loop, args=item) for item in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return results, errors


def _left_as_found(model, training, implementation):
    assert [m.training for m in model.modules()] == training
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert attention_implementation(model) == implementation


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_decompositions_of_one_model_from_several_threads(family):
    model = build(family).train()  # a training model must come back training
    model.model.layers[0].mlp.eval()
    training = [m.training for m in model.modules()]
    implementation = attention_implementation(model)
    prompts = {"short": random_ids(5, seed=1), "long": random_ids(23, seed=2), "mid": random_ids(11, seed=3)}
    expected = {name: rw.decompose(model, ids) for name, ids in prompts.items()}
    results, errors = _run_together({name: (lambda ids=ids: rw.decompose(model, ids)) for name, ids in prompts.items()})
    assert errors == []
    for name, decs in results.items():
        for dec in decs:
            assert torch.equal(dec.deltas, expected[name].deltas) and torch.equal(dec.logits, expected[name].logits)
    _left_as_found(model, training, implementation)


def test_decompose_and_the_analyses_that_rerun_the_model_from_several_threads():
    model = build("qwen2").train()
    training = [m.training for m in model.modules()]
    implementation = attention_implementation(model)
    dec = rw.decompose(model, random_ids(9, seed=4))
    target = dec.top_prediction(-1)
    jobs = {
        "decompose": lambda: rw.decompose(model, random_ids(17, seed=5)).deltas,
        "attention capture": lambda: A.capture_attention(model, random_ids(13, seed=6)).probs[1],
        "block budget": lambda: A.block_budget(dec, k=2).target_logprob,
        "drop one": lambda: A.drop_one(dec, target).logprob,
        "induction": lambda: A.induction_scores(model, n_tokens=6, batch=2).scores,
    }
    expected = {name: job() for name, job in jobs.items()}
    results, errors = _run_together(jobs)
    assert errors == []
    for name, values in results.items():
        for value in values:
            torch.testing.assert_close(value, expected[name], atol=0, rtol=0, msg=name)
    _left_as_found(model, training, implementation)


def test_different_models_do_not_wait_for_each_other():
    from resid_widgets.model_state import model_lock

    first, second = build("llama"), build("llama")
    assert model_lock(first) is model_lock(first) and model_lock(first) is not model_lock(second)
    with model_lock(first):  # another thread holds the first model: the second one still runs
        done = []
        worker = threading.Thread(target=lambda: done.append(rw.decompose(second, random_ids(5))))
        worker.start()
        worker.join(timeout=60)
        assert done
