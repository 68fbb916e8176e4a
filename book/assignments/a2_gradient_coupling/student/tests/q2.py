OK_FORMAT = True

test = {   'name': 'q2',
    'points': 4,
    'suites': [   {   'cases': [   {   'code': '>>> def _grads_after_backward(seed, blocks=(3,)):\n'
                                               '...     model = tiny_resnet(blocks, seed=seed)\n'
                                               '...     x, y = random_batch(8, seed=seed)\n'
                                               '...     F.cross_entropy(model(x), y).backward()\n'
                                               '...     return model\n'
                                               '>>> for lam in (0.0, 1.0):\n'
                                               '...     mine, ref = (_grads_after_backward(0), _grads_after_backward(0))\n'
                                               '...     apply_coupling(mine, lam)\n'
                                               '...     GradientCoupling(ref, lam).apply()\n'
                                               '...     for (name, p), q in zip(mine.named_parameters(), ref.parameters()):\n'
                                               "...         assert p.grad is not None, f'{name}: gradient missing'\n"
                                               '...         assert torch.allclose(p.grad, q.grad, atol=1e-06), f"strength {lam}: gradient of {name} differs from GradientCoupling\'s"\n',
                                       'hidden': False,
                                       'locked': False},
                                   {   'code': '>>> def _grads_after_backward(seed, blocks=(3,)):\n'
                                               '...     model = tiny_resnet(blocks, seed=seed)\n'
                                               '...     x, y = random_batch(8, seed=seed)\n'
                                               '...     F.cross_entropy(model(x), y).backward()\n'
                                               '...     return model\n'
                                               '>>> model = _grads_after_backward(1)\n'
                                               '>>> apply_coupling(model, 1.0)\n'
                                               '>>> blocks = model.stages[0].blocks\n'
                                               '>>> for (name, p), q in zip(blocks[0].named_parameters(), blocks[2].parameters()):\n'
                                               "...     assert torch.allclose(p.grad, q.grad, atol=1e-06), f'strength 1: block 0 and block 2 must get the same gradient for {name}'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
