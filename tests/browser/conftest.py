"""Fixtures shared by the browser tests of the views."""

from __future__ import annotations

import pytest

from .harness import Page


@pytest.fixture
def open_page(browser, tmp_path):
    pages = []

    def _open(widgets, **kw):
        pg = Page(browser, tmp_path, widgets, name=f"p{len(pages)}", **kw)
        pages.append(pg)
        return pg

    yield _open
    for pg in pages:
        pg.close()


@pytest.fixture
def rw():
    import resid_widgets.views as v

    return v
