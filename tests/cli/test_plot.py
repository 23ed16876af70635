"""pvsim-run --plot: a PNG of the day when matplotlib is there, one clear line when it is not."""

import os
import sys

import pytest

from pvsim.cli import plot, run
from pvsim.model.energy import EnergyBalance
from pvsim.run.aggregators import AverageDay

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUN = ["--accelerated", "--broker", "none", "--date", "2024-06-21", "--step", "300",
       "--timezone", "Europe/Madrid"]


def no_config(tmp_path):
    path = tmp_path / "pvsim.yaml"
    path.write_text("{}\n")
    return ["--config", str(path)]


def test_missing_matplotlib_is_one_clear_line_before_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    assert plot.missing() == "--plot needs matplotlib: apt install python3-matplotlib"
    out = tmp_path / "out"
    code = run.main([*RUN, *no_config(tmp_path), "--output", str(out), "--plot", str(tmp_path / "d.png")])
    assert code != 0
    err = capsys.readouterr().err
    assert err.strip() == "pvsim-run: --plot needs matplotlib: apt install python3-matplotlib"
    assert not out.exists()  # nothing was simulated


def test_run_with_plot_draws_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "day.png"
    assert run.main([*RUN, *no_config(tmp_path), "--output", str(tmp_path / "out"), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert png.stat().st_size > 20_000
    assert f"plot: {png}" in capsys.readouterr().out


def test_plot_of_csv_rows(tmp_path):
    pytest.importorskip("matplotlib")
    csv = tmp_path / "pvsim-2024-06-21.csv"
    csv.write_text("timestamp,meter_id,meter_w,meter_kw,pv_kw,net_kw\n"
                   "2024-06-21T12:00:00+02:00,m,1000.0,1.0000,2.0000,-1.0000\n"
                   "2024-06-21T12:00:01+02:00,m,1500.0,1.5000,2.0000,-0.5000\n")
    series = plot.read_series([csv])
    assert [r[1:] for r in series["m"]] == [(1.0, 2.0, -1.0), (1.5, 2.0, -0.5)]
    png = tmp_path / "p.png"
    plot.plot_run([csv], png, {"m": EnergyBalance(consumed_kwh=1.0)}, "test")
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_unwritable_plot_file_is_a_clear_error(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    code = run.main([*RUN, *no_config(tmp_path), "--output", str(tmp_path / "out"),
                     "--plot", str(tmp_path / "no" / "such" / "dir.png")])
    assert code == os.EX_CANTCREAT
    assert "cannot draw" in capsys.readouterr().err


def png_size(path) -> tuple[int, int]:
    """(width, height) in pixels from the PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.fixture
def figures(monkeypatch):
    """The matplotlib figures saved, for their panels."""
    Figure = pytest.importorskip("matplotlib.figure").Figure
    saved = []
    save = Figure.savefig

    def spy(self, *args, **kwargs):
        saved.append(self)
        return save(self, *args, **kwargs)
    monkeypatch.setattr(Figure, "savefig", spy)
    return saved


def average_day(level: float) -> AverageDay:
    """A flat load of `level` kW and a noon PV hump, every other bin empty (a 30-minute step)."""
    meter = [level if i % 2 == 0 else None for i in range(96)]
    pv = [max(0.0, 3 - abs(i - 52) / 8) if i % 2 == 0 else None for i in range(96)]
    return AverageDay(900, meter, pv)


def test_annual_from_more_than_31_days() -> None:
    assert not plot.annual(1) and not plot.annual(31)
    assert plot.annual(32) and plot.annual(365)


@pytest.mark.slow
def test_plot_year_draws_bars_and_an_average_day_per_month(tmp_path, figures) -> None:
    months = [f"2026-{m:02d}" for m in range(1, 13)]
    balances = {"m": {month: EnergyBalance(consumed_kwh=2000.0, pv_kwh=800.0, import_kwh=1300.0,
                                           export_kwh=100.0) for month in months}}
    profiles = {"m": {month: average_day(1.0) for month in months}}
    png = tmp_path / "year.png"
    plot.plot_year(png, balances, profiles, "a year")
    assert png_size(png)[0] == 1500 and 200_000 > png.stat().st_size > 30_000
    (fig,) = figures
    bars, *days = fig.axes
    assert len(days) == 12  # a 3 x 4 grid of average days
    assert [t.get_text() for t in bars.get_xticklabels()] == ["Jan\n2026", "Feb", "Mar", "Apr", "May",
                                                              "Jun", "Jul", "Aug", "Sep", "Oct",
                                                              "Nov", "Dec"]
    assert [days[i].get_title() for i in (0, 11)] == ["Jan", "Dec"]
    legend = [t.get_text() for t in bars.get_legend().get_texts()]
    assert legend[:3] == ["PV used on site: 8,400 kWh", "grid import: 15,600 kWh",
                          "PV exported: 1,200 kWh"]
    assert "energy per month (kWh)" in bars.get_ylabel() and days[0].get_ylabel() == "kW"
    stacks = [p.get_height() for p in bars.patches]  # on site, import, export: 12 bars each
    assert stacks[:12] == [700.0] * 12 and stacks[12:24] == [1300.0] * 12
    assert stacks[24:] == [-100.0] * 12


@pytest.mark.slow
def test_plot_year_of_several_meters_and_a_few_months(tmp_path, figures) -> None:
    months = ["2025-12", "2026-01", "2026-02"]
    balances = {m: {month: EnergyBalance(consumed_kwh=10.0) for month in months} for m in ("a", "b")}
    profiles = {m: {month: average_day(2.0) for month in months} for m in ("a", "b")}
    png = tmp_path / "months.png"
    plot.plot_year(png, balances, profiles, "two meters")
    one = png_size(png)
    (fig,) = figures
    assert len(fig.axes) == 2 * (1 + 3)  # per meter: the bars and three average days in a row
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["Dec\n2025", "Jan\n2026", "Feb"]
    assert fig.axes[1].get_title() == "Dec 2025"  # the run spans two years
    plot.plot_year(png, {"a": balances["a"]}, {"a": profiles["a"]}, "one meter")
    assert png_size(png)[1] < one[1] / 1.5  # a row per meter


def test_a_run_over_more_than_31_days_plots_months_from_its_own_average_days(
        tmp_path, figures, monkeypatch) -> None:
    """The annual figure of a 40-day run; its average days are the run's readings: a month's
    mean power over the day, times its hours, is the month's energy."""
    summaries = []
    simulate = run.simulate
    monkeypatch.setattr(run, "simulate", lambda cfg, opts: summaries.append(simulate(cfg, opts))
                        or summaries[-1])
    png = tmp_path / "months.png"
    args = ["--accelerated", "--broker", "none", "--date", "2026-01-01", "--days", "40", "--step",
            "900", "--timezone", "Europe/Madrid", *no_config(tmp_path), "--output", str(tmp_path / "out")]
    assert run.main([*args, "--plot", str(png)]) == 0
    assert png_size(png)[0] == 1500
    (fig,) = figures
    assert [ax.get_title() for ax in fig.axes[1:]] == ["Jan", "Feb"]
    (summary,) = summaries
    for month, days in (("2026-01", 31), ("2026-02", 9)):
        day = summary.profiles["smart-meter-0"][month]
        balance = summary.months["smart-meter-0"][month]
        assert sum(day.meter_kw) / 4 * days == pytest.approx(balance.consumed_kwh, rel=2e-3)
        assert sum(day.pv_kw) / 4 * days == pytest.approx(balance.pv_kwh, rel=2e-3)
        assert day.pv_kw[8] == 0 and day.pv_kw[56] > 1  # dark at 02:00, bright at 14:00
