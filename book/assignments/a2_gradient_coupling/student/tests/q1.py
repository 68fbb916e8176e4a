OK_FORMAT = True

test = {   'name': 'q1',
    'points': 3,
    'suites': [   {   'cases': [   {   'code': '>>> g = [torch.randn(3, 2) for _ in range(4)]\n'
                                               '>>> before = [t.clone() for t in g]\n'
                                               '>>> out = couple_(g, 0.0)\n'
                                               ">>> assert out is not None, 'couple_ returned None: fill it in (and return the list)'\n"
                                               ">>> assert all((torch.equal(a, b) for a, b in zip(g, before))), 'strength 0 must leave every gradient unchanged'\n",
                                       'hidden': False,
                                       'locked': False},
                                   {   'code': '>>> g = [torch.randn(3, 2) for _ in range(4)]\n'
                                               '>>> mean = torch.stack(g).mean(0)\n'
                                               '>>> ids = [id(t) for t in g]\n'
                                               '>>> _ = couple_(g, 1.0)\n'
                                               ">>> assert [id(t) for t in g] == ids, 'change the tensors in place, do not replace them with new ones'\n"
                                               '>>> assert all((torch.allclose(t, mean, atol=1e-06) for t in g)), "strength 1 must set every gradient to the group\'s mean"\n',
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
