"""SteplogCallback with the real transformers Trainer on a tiny BERT built from a config (no downloads)."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")  # the `transformers` extra; CI installs it (see pyproject's test extra)

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

import steplog
from steplog.integrations.transformers import SteplogCallback


class Recorder(TrainerCallback):
    """Keeps what the Trainer reported, with the step, to compare with the history."""

    def __init__(self):
        self.logged = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logged.append((state.global_step, dict(logs)))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.logged.append((state.global_step, dict(metrics)))


def tiny_model():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=16, num_labels=2)
    return BertForSequenceClassification(config)


def dataset(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 32, (n, 6), generator=g)
    return [{"input_ids": i, "attention_mask": torch.ones(6, dtype=torch.long), "labels": int(i[0] % 2)} for i in ids]


def trainer(tmp_path, callbacks, max_steps=6, **kwargs):
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=max_steps, logging_steps=1,
                             per_device_train_batch_size=4, eval_strategy="steps", eval_steps=3, save_steps=3,
                             report_to="none", use_cpu=True, disable_tqdm=True, run_name="tiny-bert", **kwargs)
    return Trainer(model=tiny_model(), args=args, train_dataset=dataset(), eval_dataset=dataset(8, 1),
                   callbacks=callbacks)


def expected_rows(logged):
    rows = {}
    for step, logs in logged:
        rows.setdefault(step, {}).update({k: float(v) for k, v in logs.items() if isinstance(v, (int, float))})
    return rows


def assert_history_matches(history, rows):
    assert history["step"].to_list() == sorted(rows)
    for record in history.iter_rows(named=True):
        for key, value in rows[record["step"]].items():
            assert record[key] == value, (record["step"], key)


def test_train_logs_what_the_trainer_reported(tmp_path, root):
    recorder = Recorder()
    t = trainer(tmp_path, [SteplogCallback(root=root), recorder])
    t.train()
    assert {"loss", "eval_loss", "train_runtime"} <= {k for _, logs in recorder.logged for k in logs}
    assert_history_matches(steplog.history("tiny-bert", root=root), expected_rows(recorder.logged))
    record = steplog.runs(root).row(0, named=True)
    assert record["status"] == "finished"
    assert record["config.training_args.per_device_train_batch_size"] == 4
    assert record["config.model.hidden_size"] == 8 and record["config.trainer.max_steps"] == 6


def test_resume_from_checkpoint_rewinds_the_same_run(tmp_path, root):
    first = SteplogCallback(root=root, name="resumable")
    trainer(tmp_path, [first]).train()
    run_id = first.run.id
    recorder = Recorder()
    again = SteplogCallback(root=root, name="resumable")
    trainer(tmp_path, [again, recorder]).train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-3"))
    assert again.run.id == run_id and len(steplog.runs(root)) == 1
    everything = steplog.history(run_id, root=root, all_segments=True)
    old = everything.filter(everything["segment"] == 0)
    assert old.filter(old["step"] >= 3)["superseded"].all() and not old.filter(old["step"] < 3)["superseded"].any()
    current = steplog.history(run_id, root=root)
    assert_history_matches(current.filter(current["step"] > 3), expected_rows(recorder.logged))
    assert steplog.runs(root)["status"].item() == "finished"


def test_resume_without_a_run_id_in_the_checkpoint_uses_resume(root):
    """A checkpoint made before the callback was added holds no run id: resume= names the run to continue."""
    from transformers import TrainerControl, TrainerState

    args = TrainingArguments(output_dir=str(root.parent / "out"), report_to="none", use_cpu=True)
    first = SteplogCallback(name="older", root=root)
    first.on_train_begin(args, TrainerState(), TrainerControl())
    for step in range(1, 6):
        first.on_log(args, TrainerState(global_step=step), TrainerControl(), logs={"loss": 1.0 / step})
    first.on_train_end(args, TrainerState(global_step=5), TrainerControl())

    again = SteplogCallback(root=root, resume="older")
    again.on_train_begin(args, TrainerState(global_step=3), TrainerControl())  # resumed from checkpoint-3
    again.on_log(args, TrainerState(global_step=4), TrainerControl(), logs={"loss": 0.1})
    again.on_train_end(args, TrainerState(global_step=4), TrainerControl())
    assert again.run.id == first.run.id
    history = steplog.history("older", root=root)
    assert history["step"].to_list() == [1, 2, 4] and history["loss"].to_list() == [1.0, 0.5, 0.1]
