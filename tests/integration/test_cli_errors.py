"""Every verb, given bad arguments, answers in one line on stderr with exit code 2.

Each case runs the real command in its own process, so whatever reaches stderr counts:
Python tracebacks, argparse's usage block and native libraries' own log lines alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fraudscreen.cli.arguments import walk_verbs
from fraudscreen.cli.main import build_parser, main
from tests.support.service_support import free_port


def _cases(tmp: Path, bundle: Path) -> dict[tuple[str, ...], list[list[str]]]:
    """Bad invocations per verb: the values the parser refuses and the ones only the verb
    itself can check (missing files, wrong keys, missing bundles)."""
    (tmp / "wrong.key").write_text("not a key\n")
    (tmp / "wrong.key").chmod(0o600)
    history = tmp / "h.csv"
    history.write_text("TRANSACTION_ID\n1\n")
    missing = str(tmp / "missing")
    config = ["--config", str(tmp / "missing.toml")]
    port = str(free_port())
    return {
        ("simulate",): [["--out", "x.csv", "--days", "0"], ["--out", "x.csv", "--start", "May"]],
        ("train",): [
            [str(history), "--out", "m", "--timezone", "Mars/Olympus"],
            [missing + ".csv", "--out", str(tmp / "m")],
            ["--out", str(tmp / "m")],
        ],
        ("evaluate",): [[missing, str(history)], ["--privacy", "--epsilons", "one"]],
        ("compile",): [[missing]],
        ("bench",): [["--rows", "0"], [missing]],
        ("serve",): [config],
        ("tokenize",): [config],
        ("sync", "status"): [config],
        ("keys", "generate"): [
            [
                "--private",
                str(tmp / "k"),
                "--public",
                str(tmp / "k.pub"),
                "--passphrase-env",
                "NO_SUCH_VAR_11",
            ]
        ],
        ("sign",): [[str(bundle), "--key", str(tmp / "wrong.key")], [str(bundle)]],
        ("publish",): [
            [str(bundle), "--hub", f"127.0.0.1:{port}", "--token-file", str(tmp / "nope.token")],
            [str(bundle), "--hub", f"127.0.0.1:{port}", "--token-file", "t", "--wait", "-1"],
        ],
        ("model", "rollback"): [config],
        ("model", "status"): [config],
        ("health",): [["--timeout", "0"], ["--wait", "soon"]],
        ("replay",): [["--batch-size", "0"], ["--mode", "carrier-pigeon"]],
        ("hub", "serve"): [["--max-workers", "0"]],
        ("hub", "add-site"): [[]],
        ("hub", "add-publisher"): [[]],
        ("hub", "export"): [
            ["--db", missing, "--schema-hash", "x", "--out", str(tmp / "o.csv")],
        ],
        ("hub", "status"): [["--db", missing]],
        ("hub", "migrate"): [["--db", "postgresql://hub@127.0.0.1:1/hub?connect_timeout=2"]],
        ("hub", "report"): [
            ["--db", missing, "--out", str(tmp / "f.html"), "--stale-after", "soon"]
        ],
    }


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSCREEN_")}
    env["FRAUDSCREEN_CACHE_DIR"] = os.environ.get("FRAUDSCREEN_CACHE_DIR", str(cwd / "cache"))
    return subprocess.run(
        [sys.executable, "-m", "fraudscreen", *argv],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_verb_answers_bad_arguments_in_one_line(
    tmp_path: Path, small_bundle_path: Path
) -> None:
    cases = _cases(tmp_path, small_bundle_path)
    verbs = {words for words, _ in walk_verbs(build_parser())}
    assert verbs == set(cases), "give every verb its bad-argument cases here"
    runs: list[list[str]] = [["--log-level", "foo", "simulate", "--out", "x.csv"]]
    runs += [["--log-format", "xml", "health"]]
    for words, bad in cases.items():
        runs += [[*words, *args] for args in bad]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda argv: (argv, _run(argv, tmp_path)), runs))
    for argv, done in results:
        shown = f"fraudscreen {' '.join(argv)}\nstdout: {done.stdout!r}\nstderr: {done.stderr!r}"
        assert done.returncode == 2, shown
        assert "Traceback" not in done.stderr, shown
        assert done.stderr.count("\n") == 1 and done.stderr.endswith("\n"), shown
        assert ": error: " in done.stderr, shown
        assert done.stdout == "", shown
    assert not (tmp_path / "var").exists()  # no verb created state while refusing


def test_every_verb_refuses_an_unknown_option_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """argparse's own errors, in process (the cases above cover what reaches the verbs)."""
    for words, _ in walk_verbs(build_parser()):
        with pytest.raises(SystemExit) as exited:
            main([*words, "--no-such-option"])
        captured = capsys.readouterr()
        assert exited.value.code == 2
        assert captured.err.count("\n") == 1, captured.err
        assert captured.err.startswith("fraudscreen") and ": error: " in captured.err
        assert "--help`)" in captured.err  # where to look next


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["train", "h.csv", "--out", "m", "--timezone", "Mars/Olympus"], "known IANA time zone"),
        (["replay", "--batch-size", "0"], "--batch-size: '0' must be at least 1"),
        (["--log-level", "foo", "health"], "--log-level: 'foo'"),
    ],
)
def test_arguments_are_checked_before_any_work(tmp_path: Path, argv: list[str], words: str) -> None:
    """h.csv does not exist: the zone is refused before the history is even opened."""
    done = _run(argv, tmp_path)
    assert done.returncode == 2
    assert words in done.stderr, done.stderr


def test_errors_name_the_file_or_setting(tmp_path: Path, small_bundle_path: Path) -> None:
    cases = _cases(tmp_path, small_bundle_path)
    publish = _run(["publish", *cases[("publish",)][0]], tmp_path)
    assert "--token-file" in publish.stderr and "nope.token" in publish.stderr
    assert "Errno" not in publish.stderr
    evaluate = _run(["evaluate", *cases[("evaluate",)][0]], tmp_path)
    assert "does not exist" in evaluate.stderr and "manifest.json" not in evaluate.stderr
    sign = _run(["sign", *cases[("sign",)][0]], tmp_path)
    assert "fraudscreen keys generate --private" in sign.stderr
    assert "generate_keypair" not in sign.stderr
