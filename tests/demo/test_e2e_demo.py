"""`make demo` as an end-to-end test: every real part, settled equals paid."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from nanotoll.demo import run_demo


@pytest.mark.e2e
def test_demo_settles_what_the_device_paid(tmp_path: Path) -> None:
    out = io.StringIO()
    code = run_demo(purchases=6, workdir=tmp_path / "demo", out=out)
    text = out.getvalue()
    assert code == 0, text
    assert "| purchases (ok / asked)         | 6 / 6" in text
    assert "| settled = paid                 | yes" in text
    assert "9,000 units" in text  # six weather nowcasts at 1,500 units
