"""The architecture gradient of DARTS's bilevel problem, first or second order.

DARTS minimises ``L_val(w*(a), a)`` over the architecture parameters ``a``, with ``w*(a)`` the weights that
minimise ``L_train(w, a)``. Approximating ``w*`` by one gradient step ``w' = w - xi * grad_w L_train(w, a)``:

- first order (``xi = 0``): ``grad_a L_val(w, a)``;
- second order: ``grad_a L_val(w', a) - xi * grad2_{a,w} L_train(w, a) . grad_w' L_val(w', a)``, the
  Hessian-vector product by central finite differences (``w +- eps * grad_w' L_val``, ``eps = 0.01 /
  ||grad_w' L_val||``), as DARTS computes it.

Functions here take closures for the two losses so they serve any relaxed supernet and any gate sampling;
``tests/test_darts.py`` checks both against finite differences of the loss they approximate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Loss = Callable[[], torch.Tensor]


def _grads(loss: torch.Tensor, params: Sequence[torch.Tensor], *, allow_unused: bool = True) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, list(params), allow_unused=allow_unused)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def first_order(val_loss: Loss, arch_params: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], float]:
    """``grad_a L_val(w, a)`` and the loss value."""
    loss = val_loss()
    return _grads(loss, arch_params), float(loss.detach())


def second_order(train_loss: Loss, val_loss: Loss, weights: Sequence[torch.Tensor], arch_params: Sequence[torch.Tensor],
                 *, xi: float) -> tuple[list[torch.Tensor], float]:
    """The unrolled gradient (module docstring) and ``L_val(w', a)``; the weights are left as they were."""
    weights = list(weights)
    saved = [w.detach().clone() for w in weights]
    try:
        g_train = _grads(train_loss(), weights)
        with torch.no_grad():
            for w, g in zip(weights, g_train):
                w.sub_(xi * g)
        loss = val_loss()
        grads = _grads(loss, [*arch_params, *weights])
        d_arch, d_w = grads[: len(arch_params)], grads[len(arch_params):]
        norm = torch.sqrt(sum((g * g).sum() for g in d_w))
        eps = 0.01 / max(float(norm), 1e-12)
        hessian = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for w, s, g in zip(weights, saved, d_w):
                    w.copy_(s + sign * eps * g)
            hessian.append(_grads(train_loss(), arch_params))
        correction = [(p - m) / (2 * eps) for p, m in zip(*hessian)]
        return [d - xi * c for d, c in zip(d_arch, correction)], float(loss.detach())
    finally:
        with torch.no_grad():
            for w, s in zip(weights, saved):
                w.copy_(s)
