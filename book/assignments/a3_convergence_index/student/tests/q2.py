OK_FORMAT = True

test = {   'name': 'q2',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> traj = iterate(lambda h: 0.5 * h, torch.ones(2, 3), 3)\n'
                                               ">>> assert isinstance(traj, torch.Tensor), 'iterate returned None: fill it in'\n"
                                               ">>> assert traj.shape == (4, 2, 3), f'expected shape (4, 2, 3), got {tuple(traj.shape)}'\n"
                                               ">>> assert torch.allclose(traj[:, 0, 0], torch.tensor([1.0, 0.5, 0.25, 0.125])), 'h_t = 0.5^t h_0'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
