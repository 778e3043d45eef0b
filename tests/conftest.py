import pytest


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # napari's make_napari_viewer teardown reads ``rep_call`` to know whether the test
    # failed; without it a failing napari test also reports a misleading teardown error.
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(autouse=True)
def _widget_settings_file(tmp_path, monkeypatch):
    """Keep what the widget remembers out of the user's real configuration folder."""
    monkeypatch.setenv("HISTO_DENOISE_SETTINGS", str(tmp_path / "histo-denoise-widget.ini"))


@pytest.fixture(scope="session")
def trained_basic():
    """The trained basic weights the repository holds: bundled, else the release candidate."""
    from napari_histo_denoise.pretrained import best_basic_weights

    weights = best_basic_weights()
    assert weights is not None, "the repository holds neither bundled weights nor a candidate"
    return weights
