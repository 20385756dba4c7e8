"""Backend ``seqgan``: SeqGAN (Yu et al. 2017), the REINFORCE sequence GAN.

The comparison the paper invites: Gumbel-softmax lets a sequence GAN pass gradients through
discrete samples; SeqGAN does without, treating the generator as a policy and the
discriminator's verdict as its reward.

* G: ``gumbelseq.model.lstm.FeedbackLSTM`` over one-hot inputs (the network of ``mle-lstm``),
  zero initial state, ancestral sampling (a draw from ``softmax(logits)`` per step, its one-hot
  fed back).
* D: the many-to-one LSTM classifier of ``gumbel-lstm-gan`` (``gumbelseq_gan.model``), fed the
  one-hots of the ids, so it sees exactly what is sampled.
* Iterations ``0 .. pretrain_iters-1``: G minimises the teacher-forced cross-entropy (MLE
  pre-training, as in the paper). The rest: one policy-gradient step per iteration. A batch of
  ``batch_size`` strings is drawn from G; the reward of the token at step t is D's probability
  "real", averaged over ``rollouts`` Monte-Carlo completions of the prefix up to t by G itself
  (at the last step: D of the string). G minimises ``-mean (Q_t - b_t) log G(y_t | y_<t)``,
  where the baseline ``b_t`` is the batch mean of ``Q_t`` (``baseline=false``: none), plus
  ``mle_weight`` times the teacher-forced cross-entropy on a real minibatch. The paper has no
  such term (``mle_weight=0``); the default 1 is this project's departure: on arith the pure
  policy gradient, against a D near chance, drifted into one string length (see the option).
* D: after every ``d_every`` iterations (pre-training included, so D is warm when the
  adversarial phase starts), ``d_steps`` steps of ``-mean log D(x) - mean log(1 - D(G))``, each
  on a fresh real minibatch and a fresh batch from G.

All roll-outs of a batch run together: the states after every prefix come from one pass of G
over the sampled strings, then ``(max_len - 1) * rollouts * batch_size`` completions run in one
loop of ``max_len - 1`` steps (a completion from a longer prefix keeps only the steps it needs).

``pretrain_iters`` defaults to a fraction (``PRETRAIN_FRACTION``) of ``iterations``, so a
shortened run (``--iterations``, ``reproduce --quick``) keeps the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch.nn import functional as F

from gumbelseq.errors import OptionError
from gumbelseq.model.backend import Backend, BaseOptions
from gumbelseq.model.constrained import StepMask
from gumbelseq.model.gumbel import gumbel_noise
from gumbelseq.model.hookspecs import hookimpl
from gumbelseq.model.lstm import FeedbackLSTM, lstm_parameters, sampling_bytes
from gumbelseq.model.suite import ModelSpec
from gumbelseq.model.trainer import BaseTrainer
from gumbelseq_gan.model import Discriminator

__all__ = ["SeqGAN", "SeqGANOptions", "SeqGANTrainer", "PRETRAIN_FRACTION", "register_backends"]

#: Share of ``iterations`` spent on MLE pre-training when ``pretrain_iters`` is not given.
PRETRAIN_FRACTION = 2 / 3

_POSITIVE = {"min": 1}
_BETA = {"min": 0, "lt": 1}


@dataclass
class SeqGANOptions(BaseOptions):
    """Options of ``seqgan``; ``pretrain_iters`` defaults to ``PRETRAIN_FRACTION`` of ``iterations``."""

    iterations: int = 3000
    #: Real strings per D step and MLE step; generated strings per D step and per policy step.
    batch_size: int = 64
    #: 32 as ``mle-lstm``: the pre-trained generator is that baseline's network.
    hidden_g: int = field(default=32, metadata=_POSITIVE)
    hidden_d: int = field(default=32, metadata=_POSITIVE)
    #: Leading iterations (inside ``iterations``) of teacher-forced MLE for G.
    pretrain_iters: int = field(default=2000, metadata={"min": 0})
    #: Monte-Carlo completions per prefix for the per-step rewards.
    rollouts: int = field(default=4, metadata=_POSITIVE)
    #: D is trained after every ``d_every`` iterations, ``d_steps`` steps each time.
    d_every: int = field(default=5, metadata=_POSITIVE)
    d_steps: int = field(default=3, metadata=_POSITIVE)
    #: Subtract the per-step batch mean of the rewards (a variance-reducing baseline).
    baseline: bool = True
    #: Weight of a teacher-forced cross-entropy term on a real minibatch added to the policy
    #: loss. 0 is the paper's pure policy gradient; on arith it drifted into one length
    #: (92% of samples of length 9, 42% coverage, seed 0), so the default keeps G anchored.
    mle_weight: float = field(default=1.0, metadata={"min": 0})
    #: Adam learning rates: MLE pre-training, policy gradient, discriminator.
    lr_mle: float = field(default=1e-3, metadata={"gt": 0})
    lr_pg: float = field(default=1e-4, metadata={"gt": 0})
    lr_d: float = field(default=1e-3, metadata={"gt": 0})
    beta1: float = field(default=0.9, metadata=_BETA)
    beta2: float = field(default=0.999, metadata=_BETA)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pretrain_iters > self.iterations:
            raise OptionError(
                f"option pretrain_iters={self.pretrain_iters} is invalid: expected an "
                f"integer <= iterations ({self.iterations})"
            )


class _Cell:
    """One LSTM step of ``FeedbackLSTM`` on ids (no gradients): the one-hot input times the
    input weights is a row lookup, so a step is one lookup and one ``addmm`` (``nn.LSTM``
    called step by step costs several times more per step at these sizes)."""

    def __init__(self, net: FeedbackLSTM) -> None:
        lstm = net.lstm
        self.bias = lstm.bias_ih_l0 + lstm.bias_hh_l0
        # Row v: the gate pre-activations of an input one-hot at v, biases included.
        self.w_in = lstm.weight_ih_l0.t() + self.bias
        self.w_hh = lstm.weight_hh_l0.t()
        self.w_out = net.head.weight.t()
        self.b_out = net.head.bias

    def step(
        self, prev: torch.Tensor | None, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """State after reading the one-hot of ``prev [B]`` (``None``: the zero input)."""
        base = self.bias.expand(h.shape[0], -1) if prev is None else self.w_in[prev]
        gates = torch.addmm(base, h, self.w_hh)
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class SeqGANTrainer(BaseTrainer):
    """Trains G (MLE, then REINFORCE with roll-outs) and D of ``seqgan`` from ``self.generator``."""

    supports_mask = True
    options: SeqGANOptions
    # Two optimisers for G: the policy phase starts with fresh Adam moments (the MLE moments
    # describe another loss) and its own learning rate.
    checkpointed = ("G", "D", "opt_mle", "opt_pg", "opt_d")

    def build(self) -> None:
        o = self.options
        self.G = FeedbackLSTM(self.vocab_size, o.hidden_g).to(self.device)
        self.D = Discriminator(self.vocab_size, o.hidden_d).to(self.device)
        betas = (o.beta1, o.beta2)
        self.opt_mle = torch.optim.Adam(self.G.parameters(), lr=o.lr_mle, betas=betas, fused=True)
        self.opt_pg = torch.optim.Adam(self.G.parameters(), lr=o.lr_pg, betas=betas, fused=True)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=o.lr_d, betas=betas, fused=True)

    # -- pieces -------------------------------------------------------------------------------

    def _zero_state(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros((n, self.options.hidden_g), device=self.device)
        return zeros, zeros

    def _generate(self, n: int, generator: torch.Generator, mask: StepMask | None = None) -> torch.Tensor:
        """``n`` strings ``[n, max_len]`` from G at temperature 1 (what the policy is)."""
        return self.G.sample(self._zero_state(n), self.max_len, 1.0, generator, feedback="ancestral", mask=mask)

    def _d_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """D's logit per string of ``ids [B, T]`` (D reads one-hots, time-major)."""
        return self.D(F.one_hot(ids.t(), self.vocab_size).float())

    @torch.no_grad()
    def rollout(self, ids: torch.Tensor) -> torch.Tensor:
        """Completions ``[T-1, rollouts, B, T]`` by G: ``[k-1, r, i]`` is ``ids[i, :k]``
        followed by G's own continuation (a fresh draw for each ``r``), for k = 1 .. T-1."""
        n_roll = self.options.rollouts
        b, steps = ids.shape
        k_count = steps - 1
        cell = _Cell(self.G)
        # States after steps 0 .. T-2 of G reading ids (step t consumes y_{t-1}; y_{-1} = none).
        h = torch.zeros((b, self.G.hidden_size), device=self.device)
        c = torch.zeros_like(h)
        hs, cs = [], []
        for t in range(k_count):
            h, c = cell.step(None if t == 0 else ids[:, t - 1], h, c)
            hs.append(h)
            cs.append(c)
        # Completion of prefix length k: start in the state after step k-1 with input y_{k-1}.
        # All of them run together for T-1 steps; a longer prefix keeps only the T-k it needs.
        m = k_count * n_roll * b
        h = torch.stack(hs).unsqueeze(1).expand(k_count, n_roll, b, -1).reshape(m, -1)
        c = torch.stack(cs).unsqueeze(1).expand(k_count, n_roll, b, -1).reshape(m, -1)
        prev = ids[:, :k_count].t().unsqueeze(1).expand(k_count, n_roll, b).reshape(m)
        noise = gumbel_noise((k_count, m, self.vocab_size), generator=self.generator, device=self.device)
        noise.add_(cell.b_out)
        tail = torch.empty((k_count, m), dtype=torch.long, device=self.device)
        for j in range(k_count):
            h, c = cell.step(prev, h, c)
            # Gumbel-max: a draw from softmax(logits), as G.sample(feedback="ancestral") at tau 1.
            prev = torch.addmm(noise[j], h, cell.w_out).argmax(dim=1)
            tail[j] = prev
        prefix = ids.expand(k_count, n_roll, b, steps).reshape(m, steps)
        k = torch.arange(1, steps, device=self.device).repeat_interleave(n_roll * b).unsqueeze(1)
        pos = torch.arange(steps, device=self.device).unsqueeze(0)
        from_tail = tail.t().gather(1, (pos - k).clamp(min=0, max=k_count - 1))
        return torch.where(pos < k, prefix, from_tail).view(k_count, n_roll, b, steps)

    @torch.no_grad()
    def rewards(self, ids: torch.Tensor) -> torch.Tensor:
        """``Q [T, B]``: for t < T-1 the mean of D(real) over ``rollouts`` completions by G of
        ``ids[:, :t+1]``; for t = T-1, D(real) of ``ids`` itself."""
        b, steps = ids.shape
        last = torch.sigmoid(self._d_logits(ids)).unsqueeze(0)
        if steps == 1:
            return last
        full = self.rollout(ids)
        q = torch.sigmoid(self._d_logits(full.view(-1, steps))).view(full.shape[:3]).mean(dim=1)
        return torch.cat([q, last])

    def _train_d(self) -> dict[str, float]:
        o = self.options
        b = o.batch_size
        for _ in range(o.d_steps):
            real = self.minibatch(b)
            fake = self._generate(b, self.generator)
            logits = self._d_logits(torch.cat([real, fake]))
            loss = F.softplus(-logits[:b]).mean() + F.softplus(logits[b:]).mean()
            self.opt_d.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_d.step()
        with torch.no_grad():
            probs = torch.sigmoid(logits)
            values = torch.stack([loss.detach(), probs[:b].mean(), probs[b:].mean()]).tolist()
        return dict(zip(("d_loss", "d_real", "d_fake"), values))

    # -- training -----------------------------------------------------------------------------

    def train_step(self, iteration: int) -> dict[str, float]:
        o = self.options
        metrics: dict[str, float] = {}
        if iteration < o.pretrain_iters:
            loss = self.G.mle_loss(self.minibatch(o.batch_size))
            self.opt_mle.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_mle.step()
            metrics["mle_loss"] = loss.item()
        else:
            ids = self._generate(o.batch_size, self.generator)
            q = self.rewards(ids)  # [T, B]
            advantage = q - q.mean(dim=1, keepdim=True) if o.baseline else q
            logp = torch.log_softmax(self.G.teacher_forced_logits(ids), dim=-1)
            logp = logp.gather(2, ids.t().unsqueeze(2)).squeeze(2)  # [T, B]
            pg = -(advantage * logp).mean()
            objective = pg
            if o.mle_weight > 0:
                mle = self.G.mle_loss(self.minibatch(o.batch_size))
                objective = pg + o.mle_weight * mle
            self.opt_pg.zero_grad(set_to_none=True)
            objective.backward()
            self.opt_pg.step()
            values = torch.stack([pg.detach(), q[-1].mean()]).tolist()  # one device sync
            metrics["g_loss"], metrics["reward"] = values
            if o.mle_weight > 0:
                metrics["mle_loss"] = mle.item()
        # After the G step: every d_every-th iteration ends with D steps, so with d_every
        # dividing the log interval every logged row carries D's figures.
        if (iteration + 1) % o.d_every == 0:
            metrics.update(self._train_d())
        return metrics

    # -- sampling -----------------------------------------------------------------------------

    def draw(self, n: int, tau: float, generator: torch.Generator, mask: StepMask | None = None) -> torch.Tensor:
        """Ancestral samples from ``softmax(logits / tau)``, as ``mle-lstm``."""
        return self.G.sample(self._zero_state(n), self.max_len, tau, generator, feedback="ancestral", mask=mask)


class SeqGAN(Backend):
    name = "seqgan"
    description = "SeqGAN (Yu et al. 2017): MLE-pretrained LSTM trained by REINFORCE with Monte-Carlo roll-outs"
    Options = SeqGANOptions
    trainer_class = SeqGANTrainer
    progress_metrics = ("mle_loss", "g_loss", "reward", "d_loss")
    # After the GAN rows (order 1): the REINFORCE alternative the Gumbel-softmax GAN avoids.
    reproduce_suite = (
        ModelSpec("seqgan", "SeqGAN (REINFORCE)", {}, "MLE pre-training, then policy gradient with roll-outs",
                  order=2, quick_options={"rollouts": 2}),
    )
    tau_help = (
        "Sampling temperature: each character is drawn from softmax(logits / tau), its one-hot "
        "fed back. 1 samples the trained policy; below 1 is greedier, above 1 flatter."
    )

    def defaults(self, given: Mapping[str, Any]) -> dict[str, Any]:
        iterations = given.get("iterations", SeqGANOptions.iterations)
        return {"pretrain_iters": round(iterations * PRETRAIN_FRACTION)}

    def memory_estimate(self, options: BaseOptions, *, vocab_size: int, max_len: int) -> int:
        assert isinstance(options, SeqGANOptions)
        o = options
        v, hg, hd, b = vocab_size, o.hidden_g, o.hidden_d, o.batch_size
        # Parameters with gradients and Adam moments (two optimisers for G), float32.
        params = 5 * lstm_parameters(hg, v) + 4 * lstm_parameters(hd, v)
        # Roll-outs (no gradients): states, noise, ids and D's pass over every completion.
        rows = max(max_len - 1, 1) * o.rollouts * b
        rollout = rows * (4 * hg + max_len * (2 * v + 4 + 6 * hd))
        # Kept for backward: G teacher-forced on the batch, D on real + generated.
        acts = b * max_len * (6 * hg + 3 * v) + 2 * b * max_len * (6 * hd + 2 * v)
        return 4 * (params + 2 * rollout + 3 * acts) + sampling_bytes(SeqGANTrainer.sample_chunk, max_len, v, hg)


@hookimpl
def register_backends(register) -> None:  # noqa: ANN001 - pluggy passes a plain callable
    register(SeqGAN())
