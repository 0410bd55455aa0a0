"""The persistent tuning cache: round trips across processes, atomic files, and a corrupt,
foreign or wrong entry ignored with one warning and tuned again (CPU: no kernels needed)."""
import json
import os

import pytest

from sparsecc.backends.torch import bsr, semi24
from sparsecc.backends.torch.tuning import SCHEMA, TuningCache, entry_key
from sparsecc.cache import SparseccWarning

ENV = {"device": "NVIDIA H200", "capability": "9.0", "torch": "2.11.0", "cuda": "13.0",
       "driver": 13000, "cusparselt": 800, "triton": "3.6.0"}
ROW = {"layout": "row", "alg_id": 6, "us": 41.2}
KEY = entry_key(14336, 4096, "torch.float16", False, 16, True)


def test_round_trip_through_a_second_instance(tmp_path):
    a = TuningCache(ENV, tmp_path)
    assert a.get(semi24.KIND, KEY, semi24._check_entry) is None and a.misses == 1
    a.put(semi24.KIND, KEY, ROW)
    b = TuningCache(ENV, tmp_path)                       # another process
    assert b.get(semi24.KIND, KEY, semi24._check_entry) == ROW and b.hits == 1
    assert os.path.basename(a.path).startswith("nvidia-h200-")
    assert [p for p in os.listdir(tmp_path) if not p.endswith(".json")] == []   # no temp files


def test_other_versions_get_another_file(tmp_path):
    a = TuningCache(ENV, tmp_path)
    a.put(semi24.KIND, KEY, ROW)
    b = TuningCache(dict(ENV, torch="2.12.0"), tmp_path)
    assert b.path != a.path and b.get(semi24.KIND, KEY) is None


def test_puts_merge_with_what_another_process_wrote(tmp_path):
    a, b = TuningCache(ENV, tmp_path), TuningCache(ENV, tmp_path)
    a.entries(), b.entries()
    a.put(semi24.KIND, "k1", ROW)
    b.put(semi24.KIND, "k2", ROW)                          # b had read before a wrote
    doc = json.loads(open(a.path).read())
    assert set(doc["entries"]) == {f"{semi24.KIND}|k1", f"{semi24.KIND}|k2"}


@pytest.mark.parametrize("content, match", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe\x00binary", "not valid JSON"),
    (json.dumps({"schema": 99, "entries": {}}).encode(), "not a sparsecc tuning file"),
    (json.dumps({"schema": SCHEMA, "environment": dict(ENV, device="NVIDIA H100"),
                 "entries": {f"{semi24.KIND}|{KEY}": ROW}}).encode(), "another device"),
])
def test_corrupt_or_foreign_file_is_one_warning_then_tuned_again(tmp_path, content, match):
    c = TuningCache(ENV, tmp_path)
    os.makedirs(tmp_path, exist_ok=True)
    with open(c.path, "wb") as f:
        f.write(content)
    with pytest.warns(SparseccWarning, match=match) as record:
        assert c.get(semi24.KIND, KEY, semi24._check_entry) is None
        assert c.get(semi24.KIND, "other", semi24._check_entry) is None
    assert len(record) == 1
    c.put(semi24.KIND, KEY, ROW)                           # replaced by a good file
    assert TuningCache(ENV, tmp_path).get(semi24.KIND, KEY, semi24._check_entry) == ROW


@pytest.mark.parametrize("kind, check, value, match", [
    (semi24.KIND, semi24._check_entry, {"layout": "diag", "alg_id": 1, "us": 3.0}, "layout"),
    (semi24.KIND, semi24._check_entry, {"layout": "row", "alg_id": -1, "us": 3.0}, "alg_id"),
    (semi24.KIND, semi24._check_entry, {"layout": "row", "alg_id": 2, "us": "fast"}, "us"),
    (bsr.KIND, bsr._check_entry, {"BLOCK_M": 96, "GROUP_M": 8, "num_warps": 4,
                                  "num_stages": 3}, "BLOCK_M"),
    (bsr.KIND, bsr._check_entry, {"BLOCK_M": 64, "GROUP_M": 8, "num_warps": 4}, "num_stages"),
])
def test_a_wrong_entry_is_ignored_with_its_reason(tmp_path, kind, check, value, match):
    c = TuningCache(ENV, tmp_path)
    c.put(kind, "k", value)
    with pytest.warns(SparseccWarning, match=f"ignoring tuning entry {kind} k .*{match}"):
        assert TuningCache(ENV, tmp_path).get(kind, "k", check) is None


def test_good_bsr_entry_passes_its_check():
    assert bsr._check_entry({"BLOCK_M": 128, "GROUP_M": 8, "num_warps": 8, "num_stages": 4}) is None


def test_disabled_cache_reads_and_writes_nothing(tmp_path):
    c = TuningCache(ENV, tmp_path, enabled=False)
    c.put(semi24.KIND, KEY, ROW)
    assert c.get(semi24.KIND, KEY) is None and not os.path.exists(c.path)


def test_unwritable_folder_is_one_warning(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    c = TuningCache(ENV, blocker / "tuning")               # a folder below a file
    with pytest.warns(SparseccWarning, match="can't write the tuning cache"):
        c.put(semi24.KIND, KEY, ROW)
        c.put(semi24.KIND, "k2", ROW)
