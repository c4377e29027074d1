"""kohya clips the LoRA's gradient norm at --max_grad_norm (default 1.0; 0 turns it off): so does lrfind."""

import types

import pytest
import torch
from accelerate import Accelerator

from lrfind.training.config import TrainConfig
from lrfind.training.loop import LoopState, _optimizer_step


def _one_step(max_grad_norm: float) -> torch.Tensor:
    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([weight], lr=1.0)  # SGD moves by the gradient itself: clipping shows
    parts = types.SimpleNamespace(group=None, optimizer=optimizer, max_grad_norm=max_grad_norm,
                                  accelerator=Accelerator(cpu=True),
                                  lr_scheduler=torch.optim.lr_scheduler.ConstantLR(optimizer, 1.0, total_iters=0))
    weight.grad = torch.tensor([3.0, 4.0])  # norm 5
    state = LoopState(total_steps=1, steps_per_epoch=1, epoch_losses=[0.5])
    _optimizer_step(parts, state)
    assert state.step == 1
    return weight.detach()


@pytest.mark.parametrize("max_grad_norm, moved", [(1.0, [-0.6, -0.8]), (10.0, [-3.0, -4.0]), (0.0, [-3.0, -4.0])])
def test_the_step_uses_the_clipped_gradient(max_grad_norm, moved):
    assert torch.allclose(_one_step(max_grad_norm), torch.tensor(moved), atol=1e-5)


def test_kohyas_default_and_bounds(tmp_path):
    assert TrainConfig(dataset={"train_dir": tmp_path}, max_train_steps=1).optimizer.max_grad_norm == 1.0
    with pytest.raises(ValueError):
        TrainConfig(dataset={"train_dir": tmp_path}, max_train_steps=1, optimizer={"max_grad_norm": -1})
