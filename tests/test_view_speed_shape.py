"""Views at scale, by shapes and counts (never timings, which live in benchmarks/bench_views.py):
the export's zero-ablations batched, the first Dashboard's lens limited to what it shows first,
the saved widget state's size, long-prompt snapshots within their budget."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import resid_widgets as rw
from models_zoo import build, random_ids
from resid_widgets.views import payload as P
from resid_widgets.views.edit_mode import zero_effects, zero_effects_unbatched


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2", "gpt_neox_parallel"])
def test_batched_zero_effects_equal_one_edit_per_component(family, monkeypatch):
    dec = rw.decompose(build(family), random_ids(11))
    forwards = []
    original = dec.model.forward
    monkeypatch.setattr(dec.model, "forward", lambda *a, **kw: forwards.append(kw["input_ids"].shape) or original(*a, **kw))
    for position in (-1, 4):
        forwards.clear()
        batched = zero_effects(dec, 5, position)
        # one forward, one row per zeroed sub-layer, of the prompt up to the position read
        assert forwards == [(2 * dec.n_layers, dec.position_index(position) + 1)]
        single = zero_effects_unbatched(dec, 5, position)
        assert list(batched) == list(single) == [lab for lab in dec.labels if lab.startswith(("attn.", "mlp."))]
        for label, effect in batched.items():
            for name in ("dla", "logp"):
                np.testing.assert_allclose(P.decode_payload(effect[name]), P.decode_payload(single[label][name]),
                                           rtol=1e-5, atol=1e-5, err_msg=f"{family} {label} {name}")
            for name in ("logit", "logprob"):
                assert effect[name] == pytest.approx(single[label][name], rel=1e-5, abs=1e-5)


def test_zero_effects_are_those_of_the_edited_runs():
    dec = rw.decompose(build("llama"), random_ids(9))
    effects = zero_effects(dec, 7, -1)
    ed = dec.edit(rw.Zero("mlp.1"))
    np.testing.assert_allclose(P.decode_payload(effects["mlp.1"]["dla"]), ed.contributions(7, -1).numpy(), rtol=1e-5,
                               atol=1e-6)
    assert effects["mlp.1"]["logit"] == pytest.approx(float(ed.logits[-1, 7]), abs=1e-5)
    torch.testing.assert_close(torch.as_tensor(P.decode_payload(effects["mlp.1"]["logp"])),
                               ed.lens_logprob(ed.states[:, -1], 7), rtol=1e-5, atol=1e-5)


def lens_rows(monkeypatch) -> list[int]:
    """Count the states x positions the lens reads out (every chunk of the readout)."""
    from resid_widgets.lens import Readout

    seen = []
    original = Readout.chunks

    def chunks(self, h, reuse=False):
        for rows, z in original(self, h, reuse=reuse):
            seen.append(z.shape[0])
            yield rows, z

    monkeypatch.setattr(Readout, "chunks", chunks)
    return seen


def test_first_dashboard_computes_the_lens_near_the_shown_position_only(monkeypatch):
    dec = rw.decompose(build("llama"), random_ids(40))
    C, T = len(dec.labels), dec.n_tokens
    full = P.build_payload(dec, full_lens=True)  # computed first: its lens is not the view's
    dec._lens_cache.clear()
    monkeypatch.setattr(P, "FIRST_LENS_CELLS", 5 * C)
    seen = lens_rows(monkeypatch)
    dash = rw.Dashboard(dec)
    start, stop = dash._meta["lens_positions"]
    assert (start, stop) == (T - 5, T) and sum(seen) == 5 * C  # five positions of C states, not C * T
    ids = P.decode_payload(dash._arrays["lens_ids"])
    want = P.decode_payload(full["_arrays"]["lens_ids"])
    assert (ids[:, :start] == P.pending_id(dec.vocab_size)).all() and (ids[:, start:] == want[:, start:]).all()
    assert dash._vocab[str(P.pending_id(dec.vocab_size))] == "…" and dash._arrays["lens_ids"]["dtype"] == "uint16"
    assert np.isnan(P.decode_payload(dash._targets[0]["logp"])[:, :start]).all()
    # the view asks for the rest once it is up; Python readers get it too
    seen.clear()
    dash._on_custom(dash, {"type": "lens"}, [])
    assert sum(seen) == C * T and "lens_positions" not in dash._meta
    assert (P.decode_payload(dash._arrays["lens_ids"]) == want).all()
    for name in ("lens_probs", "next_prob"):
        np.testing.assert_array_equal(P.decode_payload(dash._arrays[name]), P.decode_payload(full["_arrays"][name]))
    for tp, tp_full in zip(dash._targets, full["_targets"]):
        np.testing.assert_allclose(P.decode_payload(tp["logp"]), P.decode_payload(tp_full["logp"]), rtol=1e-6, atol=1e-6)
    assert dash._vocab == full["_vocab"]


def test_lens_readers_and_snapshots_complete_a_partial_lens(monkeypatch):
    dec = rw.decompose(build("llama"), random_ids(40))
    monkeypatch.setattr(P, "FIRST_LENS_CELLS", 3 * len(dec.labels))
    lens = rw.LogitLens(dec)
    assert "lens_positions" in lens._meta
    assert not np.isnan(lens.values("top")).any() and "lens_positions" not in lens._meta
    grid = rw.StreamGrid(rw.decompose(build("llama"), random_ids(40)))
    assert "lens_positions" in grid._meta
    assert '"lens_positions"' not in rw.export_html(grid, None, progress=False)  # the page has every cell
    grid = rw.StreamGrid(rw.decompose(build("llama"), random_ids(40)))
    state = grid._snapshot_state(1_000_000)
    assert "lens_positions" not in state["_meta"]
    assert (P.decode_payload(state["_arrays"]["lens_ids"]) < grid._meta["vocab_size"]).all()


def test_fit_payload_trims_in_steps_and_keeps_every_cells_colour():
    dec = rw.decompose(build("llama"), random_ids(40))
    data = P.build_payload(dec, full_lens=True)
    C, T, k = len(dec.labels), dec.n_tokens, data["_meta"]["k"]
    assert P.fit_payload(dec, data, P.payload_bytes(data)) == (data, [])  # fits: unchanged
    small, notes = P.fit_payload(dec, data, P.payload_bytes(data) // 3)
    assert P.payload_bytes(small) <= P.payload_bytes(data) // 3
    assert len(small["_targets"]) == 1 and small["_targets"][0]["id"] == data["_targets"][0]["id"]
    assert small["_meta"]["k"] < k and small["_arrays"]["lens_ids"]["shape"] == [C, T, small["_meta"]["k"]]
    assert small["_arrays"]["state_norm"]["shape"] == [C, T]  # every cell keeps its colour
    np.testing.assert_array_equal(P.decode_payload(small["_arrays"]["lens_ids"]),
                                  P.decode_payload(data["_arrays"]["lens_ids"])[:, :, : small["_meta"]["k"]])
    assert any("targets left out" in n for n in notes) and any("top tokens of each cell" in n for n in notes)


def saved_state_bytes(widget) -> dict[str, int]:
    """Binary bytes per synced trait of ``widget.get_state()`` (what a notebook saves)."""
    from ipywidgets.widgets.widget import _remove_buffers

    _, paths, buffers = _remove_buffers(widget.get_state())
    out: dict[str, int] = {}
    for path, buf in zip(paths, buffers):
        out[path[0]] = out.get(path[0], 0) + len(bytes(buf))
    return out


@pytest.mark.parametrize("view", ["StreamGrid", "ContributionBars", "LogitLens", "Dashboard"])
def test_saved_widget_state_is_bounded_by_the_shapes(view, tmp_path):
    dec = rw.decompose(build("llama"), random_ids(40))
    w = getattr(rw, view)(dec)
    C, T, d, k = len(dec.labels), dec.n_tokens, dec.d_model, w._meta["k"]
    per_cell = 4 + 4 + 2 * k + 2 * k + 2  # norms f32, lens ids uint16 + probs f16, next-token prob f16
    per_target = C * T * 4 * 2 + T * 4 * 2  # lens log-prob and DLA per cell, logit and log-prob per position
    one_pane = C * d * 2 if w.has_trait("_panes") else 0
    rw.export_html(w, tmp_path / "w.html", budget_bytes=3_000_000)  # embeds every pane in the file only
    held = saved_state_bytes(w)
    # the Dashboard's auto targets (each position's own top token): one more target's worth
    auto_targets = per_target if w.has_trait("_top_targets") else 0
    assert sum(held.values()) <= C * T * per_cell + len(w._targets) * per_target + one_pane + auto_targets
    assert held.get("_panes", 0) == one_pane  # the selected cell's pane, not the snapshot's
    assert "_neurons" not in held and "_whatif" not in held


@pytest.mark.browser
def test_a_view_up_asks_the_kernel_for_the_rest_of_its_lens(browser, tmp_path, monkeypatch):
    from browser.harness import Page

    dec = rw.decompose(build("llama"), random_ids(40))
    monkeypatch.setattr(P, "FIRST_LENS_CELLS", 4 * len(dec.labels))
    lens = rw.LogitLens(dec)
    assert lens._meta["lens_positions"] == [36, 40]
    unanswered = rw.LogitLens(dec)  # made now: once the lens is complete, new views have every cell
    pg = Page(browser, tmp_path, [lens], kernel=True)
    try:
        for _ in range(50):  # the view's "lens" message reaches the kernel once the view is up
            if "lens_positions" not in lens._meta:
                break
            pg.page.wait_for_timeout(100)
        assert "lens_positions" not in lens._meta
        assert (P.decode_payload(lens._arrays["lens_ids"]) < dec.vocab_size).all()
        pg.page.locator('[data-rw="logit-lens"]').wait_for(timeout=5000)  # remounted with every cell
        assert pg.page.locator('[data-rw-part="lens-pending"]').count() == 0  # the note went with it
        pg.clean()
    finally:
        pg.close()
    waiting = Page(browser, tmp_path, [unanswered], name="waiting")  # no kernel answers here
    try:
        note = waiting.page.locator('[data-rw-part="lens-pending"]')
        assert note.count() == 1 and "positions 36\u201339 shown" in note.inner_text()
    finally:
        waiting.close()


def test_drop_one_and_the_export_report_their_batches():
    from resid_widgets.analysis import drop_one
    from resid_widgets.export import Progress

    dec = rw.decompose(build("llama"), random_ids(9))
    rows = []
    plain = drop_one(dec, position=-1, batch_size=2)
    counted = drop_one(dec, position=-1, batch_size=2, after_batch=rows.append)
    assert rows == [2, 1] and torch.equal(counted.effect, plain.effect)  # L + 1 = 3 rows, two at a time

    class Bar:
        total = n = 0

        def update(self, units):
            self.n += units

        def refresh(self):
            pass

    bar = Bar()
    zero_effects(dec, 3, -1, Progress(bar))
    assert bar.n == 2 * dec.n_layers  # one unit per zeroed sub-layer, counted batch by batch
