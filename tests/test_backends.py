"""The backend interface in both frameworks: weights, Adam semantics, optimizer state,
gradients and cross-framework weights. Jittor cases use 1x1x64x64 batches of n2n_unet so
that they share compiled kernels."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from n2v_repro.backends.registry import make_backend
from n2v_repro.config import OptimizerConfig
from n2v_repro.models import spec as arch_spec
from n2v_repro.models.initialisation import make_init_weights

torch = pytest.importorskip("torch")

ADAM = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}


def adam_settings(semantics: str) -> OptimizerConfig:
    return OptimizerConfig(semantics=semantics, **ADAM)


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def batch(seed: int = 0, shape=(1, 1, 64, 64)):
    rng = np.random.default_rng(seed)
    targets = rng.normal(size=shape).astype(np.float32)
    inputs = targets + 0.5 * rng.normal(size=shape).astype(np.float32)
    mask = (rng.random(shape) < 0.05).astype(np.float32)
    return inputs, targets, mask


def backend(framework: str, arch: str = "n2n_unet", seed: int = 1, semantics: str = "torch"):
    b = make_backend(framework, arch, device="cpu", threads=2)
    b.load_weights(make_init_weights(arch, seed))
    b.configure_optimizer(adam_settings(semantics))
    return b


# --- Adam update rule, on prescribed gradients -------------------------------------------

GRADS = [
    # One large, one ordinary and one tiny gradient (the tiny one is where eps matters).
    {"a": np.array([[0.3, -1.2], [2e-11, 5e-3]], np.float32), "b": np.array([1e-9], np.float32)}
    for _ in range(3)
]
for _i, _g in enumerate(GRADS):
    _g["a"] = _g["a"] * (1 + 0.3 * _i)
START = {"a": np.array([[0.1, 0.2], [-0.3, 0.4]], np.float32), "b": np.array([0.05], np.float32)}


def torch_optim_reference(steps: int) -> dict[str, np.ndarray]:
    params = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in START.items()}
    opt = torch.optim.Adam(params.values(), **ADAM)
    for grads in GRADS[:steps]:
        for k, p in params.items():
            p.grad = torch.from_numpy(grads[k])
        opt.step()
    return {k: p.detach().numpy() for k, p in params.items()}


def run_torch_adam(semantics: str, steps: int) -> dict[str, np.ndarray]:
    from n2v_repro.backends.torch_backend import TorchAdam

    params = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in START.items()}
    adam = TorchAdam(params, adam_settings(semantics))
    for grads in GRADS[:steps]:
        for k, p in params.items():
            p.grad = torch.from_numpy(grads[k])
        adam.update()
    return {k: p.detach().numpy() for k, p in params.items()}


def run_jittor_adam(semantics: str, steps: int) -> dict[str, np.ndarray]:
    from n2v_repro.backends.jittor_backend import JittorAdam, import_jittor

    jt, _ = import_jittor("cpu")
    params = {k: jt.array(v.copy()) for k, v in START.items()}
    adam = JittorAdam(jt, params, adam_settings(semantics))
    for grads in GRADS[:steps]:
        adam.update({k: jt.array(g) for k, g in grads.items()})
        jt.sync_all()
    return {k: p.numpy() for k, p in params.items()}


def jittor_optim_reference(steps: int) -> dict[str, np.ndarray]:
    from n2v_repro.backends.jittor_backend import import_jittor

    jt, _ = import_jittor("cpu")
    params = {k: jt.array(v.copy()) for k, v in START.items()}
    opt = jt.optim.Adam(list(params.values()), ADAM["lr"], eps=ADAM["eps"], betas=ADAM["betas"])
    for grads in GRADS[:steps]:
        # jt.optim.Adam takes a loss: sum(p * g) has gradient g.
        loss = sum((p * jt.array(grads[k])).sum() for k, p in params.items())
        opt.step(loss)
        jt.sync_all()
    return {k: p.numpy() for k, p in params.items()}


@pytest.mark.parametrize("framework", ["torch", pytest.param("jittor", marks=pytest.mark.jittor)])
def test_torch_semantics_match_torch_optim_adam(framework):
    run, rtol = {"torch": (run_torch_adam, 1e-6), "jittor": (run_jittor_adam, 1e-5)}[framework]
    expected, got = torch_optim_reference(3), run("torch", 3)
    for k in START:
        np.testing.assert_allclose(got[k], expected[k], rtol=rtol, atol=1e-9)


@pytest.mark.jittor
def test_keras_semantics_are_jittor_optim_adam_and_differ_from_torch():
    jittor_ref = jittor_optim_reference(3)
    for got in (run_jittor_adam("keras", 3), run_torch_adam("keras", 3)):
        for k in START:
            np.testing.assert_allclose(got[k], jittor_ref[k], rtol=1e-5, atol=1e-9)
    torch_ref = torch_optim_reference(1)
    step1 = run_torch_adam("keras", 1)
    # Where |g| >> eps both make a step of ~lr; where |g| ~ eps the Jittor step is smaller,
    # because its eps acts like eps/sqrt(1-b2) = 31.6*eps at step 1.
    big = abs(step1["a"][0, 0] - START["a"][0, 0])
    assert big == pytest.approx(abs(torch_ref["a"][0, 0] - START["a"][0, 0]), rel=1e-4)
    tiny_torch = abs(torch_ref["b"][0] - START["b"][0])
    tiny_jittor = abs(step1["b"][0] - START["b"][0])
    g, eps, b2 = 1e-9, ADAM["eps"], ADAM["betas"][1]
    assert tiny_torch == pytest.approx(ADAM["lr"] * g / (g + eps), rel=1e-3)
    assert tiny_jittor == pytest.approx(ADAM["lr"] * g / (g + eps / np.sqrt(1 - b2)), rel=1e-3)


def test_unknown_semantics_rejected():
    with pytest.raises(ValueError, match="semantics"):
        make_backend("torch", "n2n_unet", device="cpu").configure_optimizer(adam_settings("jittor"))


# --- weights -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("framework", "arch"),
    [
        *[("torch", arch) for arch in arch_spec.ARCHS],
        pytest.param("jittor", "n2v_unet", marks=pytest.mark.jittor),
        # N2V2's blur kernel is a constant: not among Jittor's saved or loaded Vars.
        pytest.param("jittor", "n2v2_unet32", marks=pytest.mark.jittor),
    ],
)
def test_weights_roundtrip(framework, arch):
    """Both frameworks start from the same initial weights (numpy arrays), bit for bit."""
    weights = make_init_weights(arch, 5)
    b = make_backend(framework, arch, device="cpu")
    b.load_weights(weights)
    got = b.get_weights()
    assert set(got) == set(weights)
    for k in weights:
        assert got[k].dtype == np.float32
        np.testing.assert_array_equal(got[k], weights[k])


@pytest.mark.parametrize("framework", ["torch", pytest.param("jittor", marks=pytest.mark.jittor)])
def test_load_weights_names_the_problem(framework):
    b = make_backend(framework, "n2n_unet", device="cpu")
    weights = make_init_weights("n2n_unet", 0)
    missing = dict(weights)
    del missing["head.conv3.bias"]
    with pytest.raises(ValueError, match="missing head.conv3.bias"):
        b.load_weights(missing)
    with pytest.raises(ValueError, match="unexpected extra.weight"):
        b.load_weights({**weights, "extra.weight": np.zeros(1, np.float32)})
    wrong = {**weights, "head.conv3.weight": np.zeros((1, 32, 5, 5), np.float32)}
    with pytest.raises(ValueError, match=r"head.conv3.weight: shape \(1, 32, 5, 5\)"):
        b.load_weights(wrong)


def test_backend_basics_and_input_checks():
    b = backend("torch")
    assert (b.name, b.arch, b.device, b.stride) == ("torch", "n2n_unet", "cpu", 32)
    assert b.peak_memory_mib() is None
    with pytest.raises(ValueError, match="multiples of 32"):
        b.predict(np.zeros((1, 1, 48, 64), np.float32))
    with pytest.raises(ValueError, match="one shape"):
        b.train_step(*batch()[:2], np.zeros((1, 1, 32, 32), np.float32))
    with pytest.raises(ValueError, match="unknown framework"):
        make_backend("tensorflow", "n2n_unet")
    untrained = make_backend("torch", "n2n_unet", device="cpu")
    with pytest.raises(RuntimeError, match="configure_optimizer"):
        untrained.train_step(*batch())


def test_torch_train_step_matches_torch_optim_adam():
    inputs, targets, mask = batch()
    b = backend("torch", "n2v_unet")
    model = b.model.__class__()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in b.get_weights().items()}, False)
    opt = torch.optim.Adam(model.parameters(), **ADAM)
    for _ in range(2):
        b.train_step(inputs, targets, mask)
        model.train()
        opt.zero_grad()
        out = model(torch.from_numpy(inputs))
        m = torch.from_numpy(mask)
        (((out - torch.from_numpy(targets)) ** 2 * m).sum() / m.sum()).backward()
        opt.step()
    got = b.get_weights()
    zero_gradient = set(arch_spec.biases_before_batch_norm("n2v_unet"))
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked") or k in zero_gradient:
            continue  # conv biases before batch norm have a zero gradient: pure rounding noise
        assert rel_error(got[k], v.numpy()) < 1e-4, k


def test_nan_loss_is_returned():
    inputs, targets, mask = batch()
    b = backend("torch")
    assert np.isnan(b.train_step(inputs * np.nan, targets, mask))


def test_masked_loss_is_eval_mode_and_side_effect_free():
    inputs, targets, mask = batch()
    b = backend("torch", "n2v_unet")
    before = b.get_weights()
    loss, grads = b.loss_and_grads(inputs, targets, mask)
    after = b.get_weights()
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])
    assert set(grads) == set(arch_spec.trainable_names("n2v_unet"))
    out = b.predict(inputs)
    expected = float(((out - targets) ** 2 * mask).sum() / mask.sum())
    assert b.masked_loss(inputs, targets, mask) == pytest.approx(expected, rel=1e-5)
    assert loss != pytest.approx(expected, rel=1e-3)  # train mode uses batch statistics


# --- optimizer state -----------------------------------------------------------------------


@pytest.mark.parametrize("framework", ["torch", pytest.param("jittor", marks=pytest.mark.jittor)])
def test_optimizer_state_roundtrip_gives_identical_next_step(framework):
    first, second = batch(1), batch(2)
    b = backend(framework)
    b.train_step(*first)
    # Evaluation between steps, as each epoch's validation does: it must leave no trace in the
    # next step (Jittor's Module.eval()/train() did, through clone ops in the step's graph).
    b.predict(first[0])
    weights, state = b.get_weights(), b.optimizer_state()
    assert int(state["step"]) == 1
    b.train_step(*second)
    expected = b.get_weights()

    resumed = make_backend(framework, "n2n_unet", device="cpu", threads=2)
    resumed.load_weights(weights)
    resumed.configure_optimizer(adam_settings("torch"))
    resumed.load_optimizer_state(state)
    resumed.train_step(*second)
    got = resumed.get_weights()
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k])
    with pytest.raises(ValueError, match="missing"):
        resumed.load_optimizer_state({"step": np.array(1)})


# --- cross-framework -----------------------------------------------------------------------


@pytest.mark.jittor
@pytest.mark.slow
def test_gradient_parity_and_cross_framework_weights():
    inputs, targets, mask = batch()
    torch_b, jittor_b = backend("torch"), backend("jittor")
    loss_t, grads_t = torch_b.loss_and_grads(inputs, targets, mask)
    loss_j, grads_j = jittor_b.loss_and_grads(inputs, targets, mask)
    assert loss_j == pytest.approx(loss_t, rel=1e-5)
    assert max(rel_error(grads_j[k], grads_t[k]) for k in grads_t) < 1e-4

    # One step in Jittor, then its weights predict the same in PyTorch.
    jittor_b.train_step(inputs, targets, mask)
    trained = jittor_b.get_weights()
    torch_b.load_weights(trained)
    assert rel_error(torch_b.predict(inputs), jittor_b.predict(inputs)) < 1e-4


@pytest.mark.slow
@pytest.mark.jittor
def test_jittor_backend_survives_a_child_killed_by_a_signal() -> None:
    """Jittor's own SIGCHLD handler would exit the process when any child dies of a signal
    (e.g. a Snakemake run a test kills); the backend restores the default handler. Runs in a
    subprocess, since the failure mode is the death of the process."""
    code = (
        "import os, signal, subprocess\n"
        "from n2v_repro.backends.registry import make_backend\n"
        "make_backend('jittor', 'n2n_unet', device='cpu', threads=1)\n"
        "child = subprocess.Popen(['sleep', '30'], start_new_session=True)\n"
        "os.killpg(child.pid, signal.SIGKILL)\n"
        "child.wait()\n"
        "print('survived', flush=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0 and "survived" in result.stdout, result.stderr[-2000:]


# --- the hot path: foreach Adam, deferred loss reads, precision ---------------------------


def numpy_adam_reference(steps: int) -> dict[str, np.ndarray]:
    """Keras' Adam (eps added to the uncorrected sqrt(v)) in float64, the formulas of base.py."""
    b1, b2 = ADAM["betas"]
    params = {k: v.astype(np.float64) for k, v in START.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    for t, grads in enumerate(GRADS[:steps], start=1):
        for k in params:
            g = grads[k].astype(np.float64)
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            step_size = ADAM["lr"] * np.sqrt(1 - b2**t) / (1 - b1**t)
            params[k] = params[k] - step_size * m[k] / (np.sqrt(v[k]) + ADAM["eps"])
    return params


def test_foreach_adam_keras_semantics_equal_the_reference_update():
    """Torch semantics are checked against torch.optim.Adam above."""
    got = run_torch_adam("keras", 3)
    expected = numpy_adam_reference(3)
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("framework", ["torch", pytest.param("jittor", marks=pytest.mark.jittor)])
def test_queued_steps_read_back_the_losses_train_step_returns(framework):
    """Deferred reading changes when the host waits, not what is computed."""
    batches = [batch(seed) for seed in (3, 4, 5)]
    stepped = backend(framework)
    expected = [stepped.train_step(*b) for b in batches]
    queued = backend(framework)
    for inputs, targets, mask in batches:
        queued.queue_train_step(inputs, targets, mask.astype(bool))
    np.testing.assert_array_equal(queued.read_losses(), expected)
    assert queued.read_losses().size == 0
    for k, value in stepped.get_weights().items():
        np.testing.assert_array_equal(queued.get_weights()[k], value)


def test_precision_on_cpu_is_float32_and_bf16_is_torch_only():
    b = make_backend("torch", "n2n_unet", device="cpu", precision="tf32")
    assert b.requested_precision == "tf32" and b.precision == "fp32"
    with pytest.raises(ValueError, match="precision"):
        make_backend("torch", "n2n_unet", device="cpu", precision="fp16")


@pytest.mark.jittor
def test_jittor_refuses_bf16():
    with pytest.raises(ValueError, match="bf16"):
        make_backend("jittor", "n2n_unet", device="cpu", precision="bf16")


def test_cuda_precision_switches_tf32_off_for_fp32_and_bf16():
    """What the parity rule relies on: fp32 means IEEE float32 in cuDNN and cuBLAS."""
    from n2v_repro.backends.torch_backend import set_cuda_precision

    conv = torch.backends.cudnn.conv
    before = (conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision)
    try:
        for precision, mode in (("tf32", "tf32"), ("fp32", "ieee"), ("bf16", "ieee")):
            set_cuda_precision(precision)
            assert conv.fp32_precision == mode
            assert torch.backends.cuda.matmul.fp32_precision == mode
    finally:
        conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = before
