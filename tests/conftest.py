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
