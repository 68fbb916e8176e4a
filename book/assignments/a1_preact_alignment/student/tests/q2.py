OK_FORMAT = True

test = {   'name': 'q2',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])\n'
                                               '>>> b = torch.tensor([[3.0, 0.0], [-2.0, -2.0], [5.0, 0.0]])\n'
                                               '>>> c = cosine_per_example(a, b)\n'
                                               ">>> assert isinstance(c, torch.Tensor), 'cosine_per_example returned None: fill it in'\n"
                                               ">>> assert c.shape == (3,), f'expected shape (3,), got {tuple(c.shape)}'\n"
                                               ">>> assert torch.allclose(c, torch.tensor([1.0, -1.0, 0.0]), atol=1e-06), f'parallel, opposite, orthogonal should give 1, -1, 0; got {c.tolist()}'\n",
                                       'hidden': False,
                                       'locked': False},
                                   {   'code': '>>> c = cosine_per_example(torch.zeros(2, 3), torch.randn(2, 3))\n'
                                               ">>> assert not torch.isnan(c).any(), 'a zero vector must give cosine 0, not nan'\n"
                                               ">>> assert torch.equal(c, torch.zeros(2)), 'a zero vector must give cosine 0'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
