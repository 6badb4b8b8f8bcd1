import subprocess
import sys

import pytest

from panoptic_perception import cli


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in cli._command_modules():
        assert name in out


@pytest.mark.slow
def test_every_subcommand_has_help():
    for name in cli._command_modules():
        done = subprocess.run([sys.executable, "-m", "panoptic_perception", name, "--help"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (name, done.stderr)
        assert "usage:" in done.stdout


def test_unknown_subcommand_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2
    assert "invalid choice: 'no-such-command'" in capsys.readouterr().err
