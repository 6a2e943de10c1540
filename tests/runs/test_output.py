"""`runs.output.prepare_out_dir`: processes of one run prepare the same folder at once without tripping over each
other (each writability probe has its own name; stale outputs may vanish under another process), and a folder that
cannot be written is a RequestError naming it; shared records name no user directory."""
import json
import threading
from pathlib import Path

import pytest

from lace_jax import records
from lace_jax.runs import output
from lace_jax.runs.request import RequestError


def test_many_processes_prepare_one_folder_at_once(tmp_path):
    errors = []

    def one():
        for _ in range(200):
            try:
                (tmp_path / "grid.png").write_bytes(b"stale")      # an earlier run's output, removed by whoever comes
                output.prepare_out_dir(tmp_path)
            except Exception as err:  # noqa: BLE001 - surfaced below
                errors.append(err)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert not list(tmp_path.glob(".write_test*"))


def test_an_unwritable_folder_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RequestError, match="cannot write to --out_dir .*file/out"):
        output.prepare_out_dir(blocker / "out")


def test_shared_records_name_no_user_directory(tmp_path):
    home, cwd = tmp_path / "home" / "ada", tmp_path / "work"
    record = {"argv": ["sample.py", "--out_dir", str(cwd / "out" / "a"), f"--checkpoint_dir={home}/ckpt",
                       "--expr", "shape=star"],
              "flags": {"out_dir": str(tmp_path / "elsewhere" / "run1"), "seed": 3, "set": ["rtol=0.1"],
                        "cwd_itself": str(cwd), "path": Path("/"), "rel": "out/x"}}
    got = records.shareable(record, cwd=cwd, home=home)
    assert got["argv"] == ["sample.py", "--out_dir", "out/a", "--checkpoint_dir=~/ckpt", "--expr", "shape=star"]
    assert got["flags"] == {"out_dir": "…/run1", "seed": 3, "set": ["rtol=0.1"], "cwd_itself": ".", "path": "…",
                            "rel": "out/x"}
    assert str(tmp_path) not in json.dumps(got)
