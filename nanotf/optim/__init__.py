"""Optimizers, learning-rate schedules and gradient clipping, written out by hand.

After a backward pass every ``Parameter`` holds its weights ``θ`` in ``.data`` and the gradient
of the loss ``g = ∂L/∂θ`` in ``.grad``. An optimizer turns the gradient into a change of the
weights. All three here follow ``torch.optim`` exactly (same formulas, same order of operations,
same state), so a nanotf run and a PyTorch run from the same weights and gradients agree to the
last few bits, and the tests check that after every step.

``SGD``: gradient descent, ``θ ← θ − lr·g``. With *momentum* μ it keeps a running sum of past
gradients ``b ← μ·b + g`` and steps along ``b`` instead, which smooths out noisy gradients and
speeds up travel along directions where the gradient keeps its sign. *Nesterov* momentum looks one
step ahead: it steps along ``g + μ·b``.

``Adam`` (Kingma & Ba 2015): keeps two running averages per weight, of the gradient
(``m``, the first moment: which way to go) and of its square (``v``, the second moment: how large
the gradient usually is), and steps ``lr · m̂ / (√v̂ + ε)``. Dividing by ``√v̂`` gives every weight
its own step size: weights with large, noisy gradients move carefully, weights with small steady
gradients move faster. Both averages start at zero and are therefore too small in the first steps;
*bias correction* divides them by ``1 − β^t`` to undo that. The Transformer paper trains with
``Adam(betas=(0.9, 0.98), eps=1e-9)`` and the Noam schedule (``noam_lr``).

``AdamW`` (Loshchilov & Hutter 2019): Adam with *decoupled* weight decay. ``Adam(weight_decay=λ)``
adds ``λ·θ`` to the gradient (L2 regularisation), so the decay is divided by ``√v̂`` like
everything else and weights with large gradients are hardly decayed. AdamW instead shrinks the
weights directly, ``θ ← θ·(1 − lr·λ)``, before the Adam step: every weight decays at the same rate.

Schedules: ``noam_lr`` (linear warm-up, then ``1/√step`` decay, as in "Attention Is All You
Need") and ``cosine_lr`` (linear warm-up, then half a cosine down to ``min_lr``) are plain
functions of the step number; ``LRScheduler(optimizer, fn)`` sets ``optimizer.lr = fn(t)`` before
update number ``t``. ``clip_grad_norm`` rescales all gradients together when their global L2 norm
is too large, the usual guard against a single exploding step.

How the code is written:

* Updates happen in place: ``θ``, ``m``, ``v`` and the momentum buffers are the same array
  objects for the whole run (``p.data`` is never replaced), and every intermediate goes into one
  of two scratch arrays that all parameters of a dtype share, through ``out=``. A step allocates
  no new arrays; in NumPy each ``a * b + c`` would otherwise allocate two temporaries per
  parameter per step.
* The array module comes from the arrays (``get_array_module``), so the same code runs on NumPy
  and CuPy.
* ``state_dict()`` is a flat ``{str: numpy array | int | float}`` dict (``"step"``, ``"lr"``,
  ``"exp_avg.3"``, ...), host-side, ready for ``numpy.savez`` or safetensors.

Where it lives: ``base.py`` (``Optimizer``: parameters, state, scratch, checked checkpoints),
``sgd.py`` (``SGD``), ``adam.py`` (``Adam``, ``AdamW``), ``schedules.py`` (``noam_lr``,
``cosine_lr``, ``LRScheduler``), ``clipping.py`` (``clip_grad_norm``) and ``checks.py`` (the
argument checks they share).
"""

from .adam import Adam, AdamW
from .base import Optimizer
from .clipping import clip_grad_norm
from .schedules import LRScheduler, cosine_lr, noam_lr
from .sgd import SGD

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "LRScheduler",
    "Optimizer",
    "clip_grad_norm",
    "cosine_lr",
    "noam_lr",
]
