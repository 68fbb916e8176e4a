OK_FORMAT = True

test = {   'name': 'q1',
    'points': 4,
    'suites': [   {   'cases': [   {   'code': '>>> unit = PreActUnit(4)\n'
                                               '>>> x = torch.randn(2, 4, 6, 6)\n'
                                               '>>> out = unit(x)\n'
                                               ">>> assert isinstance(out, torch.Tensor), 'PreActUnit(4)(x) returned None: fill in forward()'\n"
                                               '>>> assert out.shape == x.shape, f"output shape {tuple(out.shape)} differs from the input\'s {tuple(x.shape)}"\n',
                                       'hidden': False,
                                       'locked': False},
                                   {   'code': '>>> unit = PreActUnit(4)\n'
                                               ">>> assert isinstance(getattr(unit, 'bn1', None), nn.BatchNorm2d), 'unit.bn1 must be an nn.BatchNorm2d'\n"
                                               ">>> assert isinstance(getattr(unit, 'conv2', None), nn.Conv2d), 'unit.conv2 must be an nn.Conv2d'\n"
                                               ">>> assert unit.conv1.kernel_size == (3, 3) and unit.conv1.padding == (1, 1), 'conv1: 3x3 kernel, padding 1'\n"
                                               ">>> assert unit.conv1.bias is None and unit.conv2.bias is None, 'the convolutions have no bias'\n"
                                               '>>> with torch.no_grad():\n'
                                               '...     _ = unit.conv2.weight.zero_()\n'
                                               '>>> x = torch.randn(2, 4, 6, 6)\n'
                                               ">>> assert torch.allclose(unit(x), x), 'with conv2 = 0 the branch is 0, so the unit must return its input unchanged'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
