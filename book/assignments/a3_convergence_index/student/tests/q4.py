OK_FORMAT = True

test = {   'name': 'q4',
    'points': 4,
    'suites': [   {   'cases': [   {   'code': '>>> A = torch.diag(torch.tensor([1.0, 2.0]))\n'
                                               '>>> c = torch.tensor([3.0, 3.0])\n'
                                               '>>> h0 = c + 0.1 * torch.randn(4, 2, generator=torch.Generator().manual_seed(0))\n'
                                               '>>> C_contract = convergence_index(gd_step_map(A, 0.4, c), h0, n=4)\n'
                                               ">>> assert isinstance(C_contract, float), f'convergence_index must return a Python float, got {type(C_contract).__name__}'\n"
                                               ">>> assert C_contract > 0.9, f'gradient descent with eta = 0.4 < 2 / 2 contracts to c: the index should be near 1, got {C_contract}'\n"
                                               '>>> C_expand = convergence_index(gd_step_map(A, -0.3, c), h0, n=4)\n'
                                               ">>> assert C_expand == 0.0, f'gradient ascent moves away from c faster and faster: the index must be 0, got {C_expand}'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
