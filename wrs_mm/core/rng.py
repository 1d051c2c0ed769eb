"""Save and restore every random generator a training step may draw from
(torch on the CPU and on each CUDA device, numpy, ``random``), so that an
extra forward (the invariance analysis, a verification) leaves the run's
random streams as they were."""
import random

import numpy as np
import torch


def get_rng_states() -> tuple:
    """The states of torch's CPU generator, every CUDA device's, numpy's and
    ``random``'s."""
    cuda = [
        torch.cuda.get_rng_state(d) for d in range(torch.cuda.device_count())
    ]
    return (torch.get_rng_state(), cuda, np.random.get_state(),
            random.getstate())


def set_rng_states(states: tuple) -> None:
    """Restore states returned by :func:`get_rng_states`."""
    torch.set_rng_state(states[0])
    for d, s in enumerate(states[1]):
        torch.cuda.set_rng_state(s, d)
    np.random.set_state(states[2])
    random.setstate(states[3])
