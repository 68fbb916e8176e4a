OK_FORMAT = True

test = {   'name': 'q3',
    'points': 3,
    'suites': [   {   'cases': [   {   'code': '>>> traj = torch.stack([torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])])\n'
                                               '>>> u = update_sizes(traj)\n'
                                               ">>> assert isinstance(u, torch.Tensor), 'update_sizes returned None: fill it in'\n"
                                               ">>> assert u.shape == (2,), f'expected shape (2,), got {tuple(u.shape)}'\n"
                                               ">>> assert torch.allclose(u.double(), torch.tensor([0.5, 0.0], dtype=torch.float64)), f'expected [0.5, 0.0], got {u.tolist()}'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
