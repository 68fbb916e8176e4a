OK_FORMAT = True

test = {   'name': 'q1',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> A = torch.diag(torch.tensor([1.0, 2.0]))\n'
                                               '>>> c = torch.tensor([1.0, -1.0])\n'
                                               '>>> f = gd_step_map(A, 0.25, c)\n'
                                               ">>> assert callable(f), 'gd_step_map must return a function'\n"
                                               '>>> h = torch.tensor([[3.0, 1.0]])\n'
                                               ">>> assert torch.allclose(f(h), torch.tensor([[2.5, 0.0]])), f'one step from (3, 1): expected (2.5, 0.0), got {f(h)}'\n"
                                               ">>> assert torch.allclose(f(c[None]), c[None]), 'the target is the fixed point: f(c) = c'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
