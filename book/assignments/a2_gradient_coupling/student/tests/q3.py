OK_FORMAT = True

test = {   'name': 'q3',
    'points': 3,
    'suites': [   {   'cases': [   {   'code': '>>> def _max_block_difference(model):\n'
                                               '...     blocks = list(model.stages[0].blocks)\n'
                                               '...     return max(((p - q).abs().max().item() for b in blocks[1:] for p, q in zip(b.parameters(), blocks[0].parameters())))\n'
                                               '>>> def _train(strength, steps=3, seed=0):\n'
                                               '...     model = make_blocks_identical(tiny_resnet((3,), seed=seed))\n'
                                               '...     opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)\n'
                                               '...     losses = [coupled_sgd_step(model, *random_batch(8, seed=seed + t), opt, strength) for t in range(steps)]\n'
                                               '...     return (model, losses)\n'
                                               '>>> model, losses = _train(1.0)\n'
                                               ">>> assert all((isinstance(l, float) for l in losses)), f'coupled_sgd_step must return the loss as a float; got {losses}'\n"
                                               ">>> assert _max_block_difference(model) < 1e-06, 'strength 1 from identical blocks: the blocks must stay identical'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
