"""Trainer behaviour against references: exact resume, accumulation, clipping, checkpoints."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, load_model

from ddp_worker import ToyBatches, ToyModel, mse_loss
from xling.errors import XlingError
from xling.training.checkpoint import optimizer_from_tensors
from xling.training.metrics import read_metrics
from xling.training.trainer import Trainer, TrainerConfig, make_optimizer
from xling.utils.io import sha256_file


def config(**changes) -> TrainerConfig:
    base = dict(lr=0.01, warmup_steps=2, max_steps=6, log_every=1, valid_every=0, save_every=0,
                num_threads=1, progress=False, device="cpu")
    return TrainerConfig(**{**base, **changes})


def noisy_valid(model) -> dict:
    """Validation that draws from the global RNG: the trainer must not let it leak."""
    torch.rand(7)
    return {"mse": mse_loss(model, next(ToyBatches(seed=11)))[0].item()}


def run(out, cfg, *, resume=False, stop_after=None, model_seed=0, data_seed=3, batch_size=4,
        dropout=0.3, loss_fn=mse_loss, valid_fn=None, save_extra=None):
    model = ToyModel(dropout=dropout, seed=model_seed)
    batches = ToyBatches(seed=data_seed, batch_size=batch_size)
    trainer = Trainer(model, loss_fn, batches, cfg, out, valid_fn=valid_fn,
                      save_extra=save_extra, resume=resume)
    return model, trainer.train(stop_after=stop_after), trainer


def train_lines(out) -> list[dict]:
    return [r for r in read_metrics(out / "metrics.jsonl") if "split" not in r]


def assert_same_params(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


# ----------------------------------------------------------------------- resume


def test_resume_after_stop_reproduces_uninterrupted_run(tmp_path):
    cfg = config(valid_every=2)
    ref_model, ref, _ = run(tmp_path / "a", cfg, valid_fn=noisy_valid)
    _, first, _ = run(tmp_path / "b", cfg, stop_after=3, valid_fn=noisy_valid)
    assert first["stopped"] == "stop_after" and first["steps"] == 3
    assert (tmp_path / "b/checkpoints/latest").read_text().strip() == "step_00000003"
    # Different init and data seed: everything must come from the checkpoint.
    model, second, _ = run(tmp_path / "b", cfg, resume=True, model_seed=5, data_seed=99,
                           valid_fn=noisy_valid)
    assert second["stopped"] == "max_steps" and second["steps"] == 6
    losses = [r["loss"] for r in train_lines(tmp_path / "b")]
    assert losses == [r["loss"] for r in train_lines(tmp_path / "a")]
    assert [r["step"] for r in train_lines(tmp_path / "b")] == [1, 2, 3, 4, 5, 6]
    assert_same_params(model, ref_model)
    assert second["tokens_seen"] == ref["tokens_seen"] == 6 * 4
    assert second["final_loss"] == ref["final_loss"] and second["valid"] == ref["valid"]
    # Dropout is active, so the RNG restore above mattered: another seed changes the losses.
    run(tmp_path / "c", config(valid_every=2, seed=1))
    assert [r["loss"] for r in train_lines(tmp_path / "c")] != losses


def test_resume_after_crash_drops_metrics_past_the_checkpoint(tmp_path):
    cfg = config(save_every=2)
    ref_model, _, _ = run(tmp_path / "a", cfg)
    calls = []

    def crashing(model, batch):
        calls.append(1)
        if len(calls) == 4:  # during step 4, after step 3 was logged; last checkpoint: 2
            raise RuntimeError("simulated crash")
        return mse_loss(model, batch)

    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "b", cfg, loss_fn=crashing)
    assert [r["step"] for r in train_lines(tmp_path / "b")] == [1, 2, 3]
    model, _, _ = run(tmp_path / "b", cfg, resume=True)
    lines = train_lines(tmp_path / "b")
    assert [r["step"] for r in lines] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in lines] == [r["loss"] for r in train_lines(tmp_path / "a")]
    assert_same_params(model, ref_model)


def test_max_minutes_stops_cleanly_with_a_checkpoint(tmp_path):
    _, summary, _ = run(tmp_path, config(max_minutes=1e-9))
    assert summary["stopped"] == "max_minutes" and summary["steps"] == 1
    assert (tmp_path / "checkpoints/step_00000001/model.safetensors").is_file()
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


# ---------------------------------------------------- accumulation and clipping


def test_grad_accum_of_two_halves_equals_one_batch(tmp_path):
    big, _, _ = run(tmp_path / "a", config(max_steps=3, clip_norm=0), batch_size=8, dropout=0.0)
    acc, _, _ = run(tmp_path / "b", config(max_steps=3, clip_norm=0, grad_accum=2), batch_size=4,
                    dropout=0.0)
    for (name, x), y in zip(big.state_dict().items(), acc.state_dict().values()):
        assert torch.allclose(x, y, atol=1e-6), name
    for x, y in zip(big.parameters(), acc.parameters()):  # Adam hides a gradient scale error
        assert torch.allclose(x.grad, y.grad, atol=1e-7)
    assert not torch.equal(big.inp.weight, ToyModel(seed=0).inp.weight)
    for a, b in zip(train_lines(tmp_path / "a"), train_lines(tmp_path / "b")):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
        assert a["tokens_seen"] == b["tokens_seen"]


def reference_grads() -> tuple[list[torch.Tensor], float]:
    """Gradients of the first batch on the untrained toy model, and their L2 norm."""
    model = ToyModel(seed=0)
    mse_loss(model, next(ToyBatches(seed=3, batch_size=4)))[0].backward()
    grads = [p.grad.clone() for p in model.parameters()]
    return grads, torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item()


@pytest.mark.parametrize("clip", [0.05, 0.0])
def test_gradients_are_clipped_to_clip_norm(tmp_path, clip):
    raw, norm = reference_grads()
    assert norm > 0.05  # the clip below is active
    model, _, _ = run(tmp_path, config(max_steps=1, clip_norm=clip), dropout=0.0)
    got = [p.grad for p in model.parameters()]
    scale = clip / (norm + 1e-6) if clip else 1.0
    for g, r in zip(got, raw):
        assert torch.allclose(g, r * scale, atol=1e-7)
    (line,) = train_lines(tmp_path)
    if clip:
        assert line["grad_norm"] == pytest.approx(norm, rel=1e-5)
        assert torch.stack([g.norm() for g in got]).norm().item() == pytest.approx(clip, rel=1e-4)
    else:
        assert "grad_norm" not in line


def test_no_weight_decay_on_one_dimensional_params():
    opt = make_optimizer(ToyModel(), config(weight_decay=0.1))
    decay = {tuple(p.shape): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decay[(16, 6)] == 0.1 and decay[(3, 16)] == 0.1
    assert decay[(16,)] == 0.0 and decay[(3,)] == 0.0


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_rotation_contents_and_round_trip(tmp_path):
    def save_extra(d):
        (d / "config.json").write_text('{"toy": true}')

    model, _, trainer = run(tmp_path, config(max_steps=4, save_every=1, keep_checkpoints=2),
                            save_extra=save_extra)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000003", "step_00000004"]
    assert (root / "latest").read_text().strip() == "step_00000004"
    ckpt = root / "step_00000004"
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"]
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["config"]["save_every"] == 1
    for name, digest in state["sha256"].items():
        assert sha256_file(ckpt / name) == digest
    fresh = ToyModel(seed=9)
    load_model(fresh, str(ckpt / "model.safetensors"))
    assert_same_params(fresh, model)
    tensors = load_file(str(ckpt / "optimizer.safetensors"))
    assert {"state.0.exp_avg", "state.0.exp_avg_sq", "state.0.step"} <= set(tensors)
    opt = make_optimizer(fresh, config())
    optimizer_from_tensors(opt, tensors, state["optimizer"])
    want = trainer.optimizer.state_dict()
    got = opt.state_dict()
    assert got["param_groups"] == want["param_groups"]
    for i, entry in want["state"].items():
        for k, v in entry.items():
            assert torch.equal(got["state"][i][k], v), (i, k)


def corrupt(src, dst, name, mutate):
    shutil.copytree(src, dst)
    path = dst / "checkpoints/step_00000002" / name
    path.write_bytes(mutate(path.read_bytes()))
    return path


@pytest.mark.parametrize("name,mutate,message", [
    ("model.safetensors", lambda b: b[: len(b) // 2], "sha256 mismatch"),
    ("optimizer.safetensors", lambda b: b[:-1] + bytes([b[-1] ^ 1]), "sha256 mismatch"),
    ("trainer_state.json", lambda b: b[:20], "invalid JSON"),
])
def test_corrupt_checkpoint_is_a_one_line_error_naming_the_file(tmp_path, name, mutate, message):
    run(tmp_path / "ok", config(max_steps=2))
    path = corrupt(tmp_path / "ok", tmp_path / "bad", name, mutate)
    with pytest.raises(XlingError) as e:
        run(tmp_path / "bad", config(), resume=True)
    assert str(path) in str(e.value) and message in str(e.value)
    assert "\n" not in str(e.value)


def test_resume_errors(tmp_path):
    with pytest.raises(XlingError, match="no checkpoint to resume from"):
        run(tmp_path / "empty", config(), resume=True)
    run(tmp_path / "ok", config(max_steps=2))
    with pytest.raises(XlingError, match="holds checkpoints of an earlier run"):
        run(tmp_path / "ok", config())
    path = corrupt(tmp_path / "ok", tmp_path / "ranks", "trainer_state.json",
                   lambda b: json.dumps({**json.loads(b), "ranks": [{}, {}]}).encode())
    with pytest.raises(XlingError, match="written by 2 rank"):
        run(tmp_path / "ranks", config(), resume=True)
    assert path.is_file()


# ---------------------------------------------------------- metrics and options


def test_metrics_validation_plot_and_summary(tmp_path):
    seen = []

    def valid_fn(model):
        seen.append((type(model), model.training, torch.is_grad_enabled()))
        return noisy_valid(model)

    model, summary, _ = run(tmp_path, config(max_steps=4, log_every=2, valid_every=2),
                            valid_fn=valid_fn)
    assert seen == [(ToyModel, False, False)] * 2 and model.training
    records = read_metrics(tmp_path / "metrics.jsonl")
    train = [r for r in records if "split" not in r]
    valid = [r for r in records if r.get("split") == "valid"]
    assert [r["step"] for r in train] == [2, 4] and [r["step"] for r in valid] == [2, 4]
    assert {"lr", "loss", "grad_norm", "loss/toy", "tokens_per_s", "tokens_seen",
            "elapsed_s"} <= set(train[0])
    assert train[1]["tokens_seen"] == 16 and train[0]["loss/toy"] == pytest.approx(train[0]["loss"])
    run(tmp_path / "per_step", config(max_steps=4))  # same run, one line per step
    steps = [r["loss"] for r in train_lines(tmp_path / "per_step")]
    assert train[1]["loss"] == pytest.approx((steps[2] + steps[3]) / 2)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert summary["steps"] == 4 and summary["valid"] == {"mse": valid[-1]["mse"]}


def test_bfloat16_autocast_changes_numerics_slightly(tmp_path):
    run(tmp_path / "f32", config(max_steps=2))
    run(tmp_path / "bf16", config(max_steps=2, dtype="bfloat16"))
    f32 = [r["loss"] for r in train_lines(tmp_path / "f32")]
    bf16 = [r["loss"] for r in train_lines(tmp_path / "bf16")]
    assert bf16 != f32 and bf16 == pytest.approx(f32, rel=5e-2)


def test_bad_config_and_diverging_loss_are_user_errors(tmp_path):
    with pytest.raises(XlingError, match="unknown dtype 'float16'"):
        run(tmp_path / "a", config(dtype="float16"))
    with pytest.raises(XlingError, match="grad_accum=0"):
        run(tmp_path / "b", config(grad_accum=0))
    with pytest.raises(XlingError, match="loss is nan at step 1"):
        run(tmp_path / "c", config(), loss_fn=lambda m, b: (mse_loss(m, b)[0] * float("nan"), {}))


# ------------------------------------------------------------------ best model


def scripted_valid(values):
    """A validation that reports the next scripted value at each call (steps 2, 4, 6 with valid_every=2)."""
    it = iter(values)
    return lambda model: {"score": next(it), "other": 0.0}


@pytest.mark.parametrize("mode, values, best_step", [("min", [3.0, 1.0, 2.0], 4), ("max", [3.0, 1.0, 2.0], 2),
                                                     ("min", [3.0, 2.0, 1.0], 6)])
def test_best_metric_keeps_and_restores_the_best_weights(tmp_path, mode, values, best_step):
    cfg = config(valid_every=2, save_every=2, keep_checkpoints=0, best_metric="score", best_mode=mode)
    model, summary, _ = run(tmp_path, cfg, valid_fn=scripted_valid(values))
    assert summary["best"] == {"step": best_step, "metric": "score", "mode": mode,
                               "value": min(values) if mode == "min" else max(values)}
    assert json.loads((tmp_path / "best/best.json").read_text())["step"] == best_step
    # The model now holds the weights of the best step's checkpoint, bit for bit ...
    ref = ToyModel(dropout=0.3, seed=7)
    load_model(ref, str(tmp_path / f"checkpoints/step_{best_step:08d}/model.safetensors"))
    assert_same_params(model, ref)
    # ... while the latest checkpoint keeps the last weights, for --resume.
    last = ToyModel(dropout=0.3, seed=7)
    load_model(last, str(tmp_path / "checkpoints/step_00000006/model.safetensors"))
    if best_step != 6:
        assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), last.state_dict().values()))


def test_best_metric_survives_resume(tmp_path):
    cfg = config(valid_every=2, save_every=2, best_metric="score")
    values = [3.0, 1.0, 2.0]
    _, first, _ = run(tmp_path, cfg, stop_after=4, valid_fn=scripted_valid(values[:2]))
    assert first["best"]["step"] == 4
    model, second, _ = run(tmp_path, cfg, resume=True, valid_fn=scripted_valid(values[2:]))
    assert second["best"] == {"step": 4, "metric": "score", "mode": "min", "value": 1.0}  # 2.0 at step 6 is worse
    ref = ToyModel(dropout=0.3, seed=7)
    load_model(ref, str(tmp_path / "best/model.safetensors"))
    assert_same_params(model, ref)


def test_best_metric_errors(tmp_path):
    with pytest.raises(XlingError, match="best_metric='score': this run has no validation"):
        run(tmp_path / "a", config(best_metric="score"))
    with pytest.raises(XlingError, match=r"best_metric='scroe': not a validation metric.*other, score"):
        run(tmp_path / "b", config(valid_every=2, best_metric="scroe"), valid_fn=scripted_valid([1.0]))
    with pytest.raises(XlingError, match="best_mode"):
        run(tmp_path / "c", config(valid_every=2, best_metric="score", best_mode="lowest"),
            valid_fn=scripted_valid([1.0]))
