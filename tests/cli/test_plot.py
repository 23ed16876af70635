"""pvsim-run --plot: a PNG of the day when matplotlib is there, one clear line when it is not."""

import os
import sys

import pytest

from pvsim.cli import plot, run
from pvsim.model.energy import EnergyBalance

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
