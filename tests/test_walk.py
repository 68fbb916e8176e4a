"""The stage walk: schedules, states, finishing from a stage, eval_mode that always restores the mode."""
import pytest
import torch

from itercourse.models import ResNetConfig, build_resnet
from itercourse.walk import (check_model, device_of, eval_mode, finish, iterate_last_block, stage_states,
                             unrolled, without)

torch.set_num_threads(1)
CFG = ResNetConfig(in_channels=1, widths=(4, 8), blocks=(3, 2), input_size=8)


def test_schedules():
    assert unrolled(3, 2) == [0, 1, 2, 2, 2]
    assert unrolled(3, 0) == [0, 1, 2]
    assert without(4, 1) == [0, 2, 3]


def test_eval_mode_restores_every_submodule_even_on_an_exception():
    model = build_resnet(CFG, seed=0).train()
    model.stages[0].blocks[1].eval()                        # a mixed state must come back exactly
    before = {name: m.training for name, m in model.named_modules()}
    with pytest.raises(RuntimeError, match="boom"):
        with eval_mode(model):
            assert not any(m.training for m in model.modules())
            raise RuntimeError("boom")
    assert {name: m.training for name, m in model.named_modules()} == before


def test_states_and_finish_agree_with_the_forward_pass():
    model = build_resnet(CFG, seed=0).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        states = stage_states(model, x)
        assert [len(s) for s in states] == [4, 3]
        logits = model(x)
        torch.testing.assert_close(model.readout(states[-1][-1]), logits)
        torch.testing.assert_close(finish(model, states[0][-1], 0), logits)           # after stage 0
        torch.testing.assert_close(finish(model, states[0][1], 0, block=1), logits)   # before block 1
        torch.testing.assert_close(finish(model, states[1][0], 1, block=0), logits)
        longer = stage_states(model, x, {0: unrolled(3, 2)}, upto=0)
        assert len(longer) == 1 and len(longer[0]) == 6
        torch.testing.assert_close(model(x, schedules={0: without(3, 2)}),
                                   finish(model, states[0][2], 0))


def test_contract_check_and_device():
    with pytest.raises(TypeError, match="stage contract"):
        check_model(torch.nn.Linear(2, 2))
    model = build_resnet(CFG, seed=0)
    check_model(model, every_stage=True)
    assert device_of(model) == torch.device("cpu")
    assert device_of(torch.nn.ReLU()) == torch.device("cpu")


def test_iterating_the_last_block_is_the_unrolled_schedule_and_its_scaled_step():
    """The one iteration beyond the trained depth: the states of the schedule unrolled(n, k), bit for bit."""
    model = build_resnet(CFG, seed=0).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        for s, n in enumerate((3, 2)):
            by_schedule = stage_states(model, x, {s: unrolled(n, 4)}, upto=s)[s]       # h_0 .. h_{n+4}
            extra = iterate_last_block(model.stages[s], by_schedule[n], 4)
            assert not isinstance(extra, list)                                      # a generator: one state at a time
            states = list(extra)
            assert len(states) == 4
            assert all(torch.equal(a, b) for a, b in zip(states, by_schedule[n + 1:]))
        h, last = stage_states(model, x)[1][-1], model.stages[1].blocks[-1]
        scaled = list(iterate_last_block(model.stages[1], h, 3, scale=0.25))
        for got in scaled:
            h = h + 0.25 * (last(h) - h)                                           # h <- h + scale * Δ(h)
            assert torch.equal(got, h)
        assert list(iterate_last_block(model.stages[1], h, 0)) == []
