OK_FORMAT = True

test = {   'name': 'q5',
    'points': 3,
    'suites': [   {   'cases': [   {   'code': '>>> eig_max = float(torch.linalg.eigvalsh(torch.tensor([[2.0, 0.5], [0.5, 1.0]])).max())\n'
                                               ">>> assert critical_step_size(torch.diag(torch.tensor([1.0, 4.0]))) is not None, 'critical_step_size returned None: fill it in'\n"
                                               ">>> assert abs(critical_step_size(torch.diag(torch.tensor([1.0, 4.0]))) - 0.5) < 1e-06, 'eigenvalues 1 and 4: the critical step is 2 / 4'\n"
                                               ">>> assert isinstance(C_below, float) and isinstance(C_above, float), 'set C_below and C_above to the two indices'\n"
                                               ">>> assert C_below > 0.3, f'below the critical step the map contracts: index > 0, got {C_below}'\n"
                                               ">>> assert C_above == 0.0, f'above the critical step the error grows: index 0, got {C_above}'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
