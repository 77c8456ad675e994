"""The Hugging Face Trainer callback and the Lightning logger, each driven by its real framework.

Each training runs in a subprocess with ``KUBELAB_METRICS_FILE`` set, as the local backend runs a
rank, so the test sees exactly what the job's metrics would hold. The models are tiny torch
modules built in place (nothing is downloaded).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kubelab.jobs.integrations import log_scalars, sanitise

HF_SCRIPT = textwrap.dedent("""
    import torch
    from transformers import Trainer, TrainingArguments
    from kubelab.jobs.integrations.huggingface import KubelabCallback

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 1)
        def forward(self, x, labels):
            return {"loss": torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), labels)}

    gen = torch.Generator().manual_seed(0)
    data = [{"x": torch.randn(4, generator=gen), "labels": torch.tensor(1.0)} for _ in range(64)]
    args = TrainingArguments(output_dir="out", max_steps=12, logging_steps=2, per_device_train_batch_size=8,
                             report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True)
    Trainer(model=Tiny(), args=args, train_dataset=data, callbacks=[KubelabCallback(prefix="hf/")]).train()
""")

LIGHTNING_SCRIPT = textwrap.dedent("""
    import torch
    try:
        import lightning as L
    except ImportError:
        import pytorch_lightning as L
    from kubelab.jobs.integrations.lightning import KubelabLogger

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 1)
        def training_step(self, batch, _index):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), y)
            self.log("train loss", loss)
            return loss
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    gen = torch.Generator().manual_seed(0)
    ds = torch.utils.data.TensorDataset(torch.randn(64, 4, generator=gen), torch.ones(64))
    trainer = L.Trainer(max_steps=10, log_every_n_steps=1, logger=KubelabLogger(), accelerator="cpu",
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Tiny(), torch.utils.data.DataLoader(ds, batch_size=8))
""")


def run(script: str, tmp_path: Path) -> list[list]:
    path = tmp_path / "metrics.jsonl"
    env = {**os.environ, "KUBELAB_METRICS_FILE": str(path), "KUBELAB_RANK": "0", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "kubelab: " not in result.stderr, result.stderr  # nothing refused by metrics.log
    return [p for line in path.read_text().splitlines() for p in json.loads(line)["points"]]


def test_hugging_face_trainer_logs_reach_kubelab(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="the test extra installs transformers")
    points = run(HF_SCRIPT, tmp_path)
    losses = [(step, value) for name, step, value in points if name == "hf/loss"]
    assert [s for s, _ in losses] == [2, 4, 6, 8, 10, 12]
    assert any(name == "hf/learning_rate" for name, _, _ in points)


def test_lightning_logger_logs_reach_kubelab(tmp_path: Path) -> None:
    if not any(__import__("importlib.util").util.find_spec(m) for m in ("lightning", "pytorch_lightning")):
        pytest.skip("the test extra installs lightning")
    points = run(LIGHTNING_SCRIPT, tmp_path)
    steps = [step for name, step, _ in points if name == "train_loss"]  # "train loss" sanitised
    assert len(steps) >= 9 and steps == sorted(steps)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("loss", "loss"), ("train/loss", "train/loss"), ("val loss", "val_loss"), ("1st", "_1st"),
     ("Ünïcode", "_n_code"), ("", None)],
    ids=["plain", "slash", "space", "digit-first", "non-ascii", "empty"],
)
def test_names_are_sanitised_for_metrics_log(name: str, expected: str | None) -> None:
    assert sanitise(name) == expected


def test_non_numeric_entries_are_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, dict]] = []
    monkeypatch.setattr("kubelab.jobs.metrics.log", lambda step, **s: seen.append((step, s)) or True)
    assert log_scalars(3, {"loss": 0.5, "model": "bert", "epoch": 1, "nan": float("nan")}) is True
    assert seen == [(3, {"loss": 0.5, "epoch": 1.0})]
