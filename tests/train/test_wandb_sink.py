"""wandb sink of MetricsLogger in WANDB_MODE=offline: the run files on disk hold the history,
the config, the name/tags, and a resumed run keeps its id. Read back from the binary run log
(LevelDB-style records of wandb's protobuf ``Record``), not through wandb's own objects."""
import glob
import json
import math
import os
import struct

import pytest

from searchr1_jax.train.metrics import MetricsLogger, read_jsonl
from searchr1_jax.train.wandb_sink import RUN_ID_FILE, WandbSettings

BLOCK, HEADER = 32768, 7  # wandb's log: 32 KiB blocks, 7-byte record headers (crc, len, type)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_wandb_records(path):
    """Every protobuf ``Record`` of a ``run-<id>.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2
    data = open(path, "rb").read()
    assert data[:4] == b":W&B", data[:8]
    pos, records, parts = 7, [], b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0:  # zero padding up to the block end
            pos += left
            continue
        parts += data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind in (FULL, LAST):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(parts)
            records.append(rec)
            parts = b""
        else:
            assert kind in (FIRST, MIDDLE), kind
    return records


def offline_runs(logdir):
    """The run files under ``logdir``, once wandb has written them: ``finish()`` returns before
    the wandb-core service flushes its writer (a file read at once may hold only its 7-byte
    header), ``teardown()`` waits for it."""
    import wandb
    wandb.teardown()
    return sorted(glob.glob(os.path.join(logdir, "wandb", "offline-run-*", "run-*.wandb")))


def history(records):
    """{step: {key: value}} from the history records."""
    out = {}
    for rec in records:
        if rec.WhichOneof("record_type") == "history":
            items = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                     for i in rec.history.item}
            out[rec.history.step.num] = {k: v for k, v in items.items() if not k.startswith("_")}
    return out


def config_of(records):
    """The run's config: set in the run record, updated by config records."""
    cfg = {}
    for rec in records:
        kind = rec.WhichOneof("record_type")
        updates = (rec.run.config.update if kind == "run" else
                   rec.config.update if kind == "config" else ())
        for item in updates:
            cfg[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return cfg


def run_record(records):
    return next(r.run for r in records if r.WhichOneof("record_type") == "run")


@pytest.fixture(autouse=True)
def offline_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home" / var.lower()))


def test_offline_run_holds_history_config_name_tags(tmp_path):
    out = str(tmp_path / "run")
    settings = WandbSettings(project="searchr1", entity="lab", run_name="grpo-smoke",
                             tags=("grpo", "tiny"))
    config = {"rl": {"algo": "grpo", "kl_coef": 0.001}, "train": {"steps": 3}}
    with MetricsLogger(out, wandb=settings, config=config) as logger:
        logger.log(1, {"reward/mean": 0.25, "actor/loss": 1.5})
        logger.log(2, {"reward/mean": 0.5, "actor/loss": float("nan")})
        logger.log(3, {"reward/mean": 0.75, "actor/loss": -2.0})
    files = offline_runs(out)
    assert len(files) == 1
    records = read_wandb_records(files[0])
    run = run_record(records)
    assert (run.project, run.entity, run.display_name) == ("searchr1", "lab", "grpo-smoke")
    assert list(run.tags) == ["grpo", "tiny"]
    assert run.run_id == open(os.path.join(out, RUN_ID_FILE)).read().strip()
    cfg = config_of(records)
    assert cfg["rl"] == {"algo": "grpo", "kl_coef": 0.001} and cfg["train"] == {"steps": 3}
    hist = history(records)
    assert sorted(hist) == [1, 2, 3]
    assert [hist[s]["reward/mean"] for s in (1, 2, 3)] == [0.25, 0.5, 0.75]
    assert hist[1]["actor/loss"] == 1.5 and hist[3]["actor/loss"] == -2.0
    assert math.isnan(float(hist[2]["actor/loss"]))
    # the other sinks are unchanged
    assert [r["reward/mean"] for r in read_jsonl(os.path.join(out, "metrics.jsonl"))] == [
        0.25, 0.5, 0.75]


def test_resumed_logger_continues_the_same_run(tmp_path):
    out = str(tmp_path / "run")
    settings = WandbSettings(project="p")
    with MetricsLogger(out, wandb=settings, tensorboard=False) as logger:
        logger.log(1, {"x": 1.0})
    with MetricsLogger(out, wandb=settings, tensorboard=False) as logger:
        logger.log(2, {"x": 2.0})
    files = offline_runs(out)
    assert len(files) == 2  # one offline directory per process run, one run id
    ids = {run_record(read_wandb_records(f)).run_id for f in files}
    assert len(ids) == 1
    assert run_record(read_wandb_records(files[0])).display_name == "run"  # the dir's name
    assert {s for f in files for s in history(read_wandb_records(f))} == {1, 2}


def test_settings_from_config():
    from tests.train._tiny import base_config
    cfg = base_config()
    assert WandbSettings.from_config(cfg) is None  # off by default
    cfg.output.wandb_project = "proj"
    cfg.output.wandb_tags = "a, b,,c"
    cfg.output.wandb_mode = "offline"
    assert WandbSettings.from_config(cfg) == WandbSettings(project="proj", tags=("a", "b", "c"),
                                                           mode="offline")
    from searchr1_jax.config import ConfigError, validate
    cfg.output.wandb_mode = "cloud"
    with pytest.raises(ConfigError, match="output.wandb_mode"):
        validate(cfg)


def test_train_loop_logs_to_wandb(tmp_path):
    """``loop.run`` with ``output.wandb_project``: the trainer's metrics and the whole config."""
    from searchr1_jax.data import BatchIterator
    from searchr1_jax.train import loop
    from searchr1_jax.train.trainer import Trainer
    from tests.train._scripted import ScriptedRollout, hit_reward
    from tests.train._tiny import tiny_model
    from tests.train.test_trainer import tiny_config

    cfg = tiny_config("grpo", 1)
    cfg.output.dir = str(tmp_path / "train")
    cfg.output.wandb_project, cfg.output.wandb_tags = "searchr1-test", "ci"
    trainer = Trainer(cfg, tiny_model(0, num_layers=1), ScriptedRollout(),
                      BatchIterator(list(range(64)), cfg.data.train_batch_size, seed=0),
                      reward_fn=hit_reward, min_width=8)
    history_ = loop.run(trainer, cfg, progress=False)
    (path,) = offline_runs(cfg.output.dir)
    records = read_wandb_records(path)
    logged = history(records)[1]
    assert logged["reward/mean"] == pytest.approx(history_[0]["reward/mean"])
    assert logged["actor/loss"] == pytest.approx(history_[0]["actor/loss"])
    cfg_logged = config_of(records)
    assert cfg_logged["rl"]["algo"] == "grpo" and cfg_logged["train"]["steps"] == 1
    assert cfg_logged["output"]["wandb_project"] == "searchr1-test"
    assert list(run_record(records).tags) == ["ci"]
