"""The command line: fast help, one-line errors with exit status 2, JSON-only output."""

import json
import subprocess
import sys

import pytest

from simulator.cli import COMMANDS, main


def test_help_imports_neither_torch_nor_sionna():
    code = (
        "import contextlib, io, sys\n"
        "from simulator.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "print(','.join(m for m in ('torch', 'sionna', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_help_lists_every_command(run_cli):
    result = run_cli("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["ber", "--channel", "foo", "--modulation", "qpsk", "--snr-db", "1"], "--channel"),
        (["ber", "--channel", "awgn", "--modulation", "qam1024", "--snr-db", "1"], "--modulation"),
        (["ber", "--channel", "awgn", "--modulation", "qpsk", "--snr-db", "abc"], "SNR must be a number"),
        (["ber", "--channel", "awgn", "--modulation", "qpsk", "--snr-db", "nan"], "finite"),
        (["ber", "--channel", "awgn", "--modulation", "qpsk", "--snr-db", "1", "--num-bits", "-3"], "positive"),
        (["no-such-command"], "invalid choice"),
        (["bench", "--transmitter", "--batch-sizes", "1,x"], "--batch-sizes"),
        (["bench", "--transmitter", "--batch-sizes", "0"], "--batch-sizes"),
        (["bench", "--device", "tpu"], "--device"),
        (["eval", "--task", "vqa", "--device", "tpu"], "--device"),
        (["eval", "--task", "vqa", "--split", "train"], "--split"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(run_cli, args, fragment):
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_code_rate_out_of_range_is_a_user_error(capsys):
    status = main(["ber", "--channel", "awgn", "--modulation", "qpsk", "--snr-db", "1", "--coded", "--code-rate", "1.5"])
    assert status == 2
    assert capsys.readouterr().err.strip() == "error: --code-rate must be in (0, 1), got 1.5"


def test_info_json_is_json_only(run_cli):
    result = run_cli("info", "--json")
    assert result.returncode == 0
    info = json.loads(result.stdout)
    assert info["versions"]["torch"].startswith("2.")
    assert info["versions"]["sionna"].startswith("2.")
    assert info["device"] in ("cpu", "cuda")


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_ber_json_rows_next_to_theory(run_cli):
    result = run_cli("ber", "--channel", "awgn", "--modulation", "qpsk", "--snr-db", "0", "4", "--json",
                     "--num-bits", "200000")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["snr_db"] for row in rows] == [0.0, 4.0]
    for row in rows:
        assert abs(row["ber"] - row["ber_theory"]) <= 0.1 * row["ber_theory"]


def test_bench_channels_json_reports_rates_with_units(run_cli):
    result = run_cli("bench", "--channels", "--quick", "--json", "--num-users", "2")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["channels"]) == {"awgn", "rayleigh", "tdl"}
    for row in report["channels"].values():
        assert row["symbols_per_s"] > 0 and row["unit"] == "complex symbols/s" and row["num_users"] == 2
