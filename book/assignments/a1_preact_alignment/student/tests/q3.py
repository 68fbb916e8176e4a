OK_FORMAT = True

test = {   'name': 'q3',
    'points': 4,
    'suites': [   {   'cases': [   {   'code': '>>> A = 2.0 * torch.eye(3)\n'
                                               '>>> toy = QuadraticGradientBlocks(A, eta=0.1, n_blocks=4)\n'
                                               '>>> h0 = torch.randn(5, 3)\n'
                                               '>>> cos = gradient_alignment_by_hand(toy, h0, None, loss_fn=lambda out, y: toy.loss(out))\n'
                                               ">>> assert cos is not None, 'gradient_alignment_by_hand returned None: fill it in'\n"
                                               ">>> assert len(cos) == 4, f'one value per block expected (4), got {len(cos)}'\n"
                                               ">>> assert all((abs(c + 1.0) < 1e-05 for c in cos)), f'every block of this toy is an exact gradient step, so the cosine is -1; got {cos}'\n",
                                       'hidden': False,
                                       'locked': False},
                                   {   'code': '>>> from itercourse.refinement import gradient_alignment\n'
                                               '>>> model = build_resnet(ResNetConfig(in_channels=1, num_classes=3, widths=(4,), blocks=(3,), input_size=8), seed=0)\n'
                                               '>>> x, y = (torch.randn(6, 1, 8, 8), torch.randint(0, 3, (6,)))\n'
                                               '>>> mine = gradient_alignment_by_hand(model, x, y)\n'
                                               '>>> ref = gradient_alignment(model, x, y).values\n'
                                               ">>> assert len(mine) == len(ref), f'{len(ref)} blocks expected, got {len(mine)}'\n"
                                               ">>> assert all((abs(a - b) < 0.0001 for a, b in zip(mine, ref))), f'differs from itercourse.refinement.gradient_alignment: {mine} vs {list(ref)}'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
