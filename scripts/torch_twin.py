#!/usr/bin/python3
# -*- coding: utf-8 -*-
"""PyTorch twin of the mlpfbench MLPF model (parity reference for the C code).

Written from shared/spec/model.md (the authority) and docs/parity-fixture.md
only, never from the C sources, so that the two implementations cannot share
one misreading of the specification.

Run with Debian's /usr/bin/python3 (torch, numpy, h5py from Debian packages):

    torch_twin.py check FIXTURE.h5 [--dtype float64|float32] [--rtol 1e-4]
                                   [--mutate NAME|list] [--threads N]
                                   [--use-c-hash]

The model code (Config, MLPF, compute, adam_run, load_fixture) does not depend
on the command line and can be imported by other scripts:

    import torch_twin as tt
    fx = tt.load_fixture("fixture.h5")
    model = tt.build_model(fx["attrs"], dtype=torch.float64)
    tt.load_weights(model, fx)
    out = tt.compute(model, tt.batch_to_torch(fx["batch"], torch.float64))
    out["losses"]          # tensor [8]: total + 7 components (autograd graph)

-----------------------------------------------------------------------------
Reading of the specification: every place where the text leaves a choice
open, and the choice made here (the most literal reading).
-----------------------------------------------------------------------------
 1. Charge loss: NOT weighted by w_i. The spec lists "cross-entropy" and
    "(charge_i - y_charge)^2" on their own lines and applies "w_i *" only to
    the line of the five Huber terms (pt, eta, sin_phi, cos_phi, energy).
    Cross-entropy is likewise unweighted (class 0 elements count).
 2. k = min(max_num_bins // 2, max(1, floor(nb_e / 2))). For nb_e = 1 this
    gives k = 1, i.e. C = [P, -P] has 2 columns and the hash is 0 or 1;
    with a single bin the hash does not change the result anyway (one bin
    holds every element) except through the order inside the bin.
 3. Hash: argmax over the 2k columns of C = [P, -P]; the FIRST maximum wins
    (lowest column index), implemented explicitly, not via torch.argmax.
    Hash values are in [0, 2k). P is computed from xd in the working dtype
    (float64 for the reference), from the detached xd (no gradient).
 4. Sort: ascending by hash, ties broken by element index (row position
    inside the event), implemented with the unique key hash * N_e + index,
    which is exactly a stable sort.
 5. abs() in energy = |X5 + FFN_E(v)[0]| and pt = |FFN_pt(v)[0]|: the
    gradient at exactly 0 is taken as 0 (sign(0) = 0, torch's convention).
 6. Huber_d(e) with e = prediction - target; at |e| = d exactly the
    quadratic branch is used ("e^2/2 if |e| <= d"); both branches have the
    same value and slope there.
 7. D_ij = sqrt(max(s_ij, 1e-6)) with s_ij = (|d_i|^2 - 2 d_i.d_j) + |d_j|^2
    evaluated in that literal order. The gradient of max(s, 1e-6) is taken
    to be 1 where s >= 1e-6 and 0 where s < 1e-6 (torch.clamp_min; equality
    passes the gradient). On the diagonal s is ~0 so self-loops carry no
    gradient into d.
 8. clip(exp(-dist_mult * D), 0, 1) is applied literally (torch.clamp); since
    D >= 1e-3 > 0 the clip never binds.
 9. Padding rows (last bin only) have x = 0, d = 0 and m = 0. Because
    everything they could contribute is multiplied by m_i or m_j, the
    row-wise dense products (x Theta, x Wh, x Wt + bt, ffn_dist) are evaluated
    on real rows only and only the bin-wise part (A, degrees, A (n H)) is
    done on padded bins. Mathematically identical to the spec.
10. The final "* m" of the GHConvDense output is the identity on real rows;
    padding rows are dropped when scattering back.
11. LayerNorm: mean and BIASED variance over the feature axis,
    (x - mean) / sqrt(var + ln_eps) * gamma + beta (Keras's form).
12. Head widths: hidden layer i (i = 0 .. hidden_layers-1) has width
    head_hidden >> i (256, 128, 64, 32 for hepscore22); elu after every
    dense layer but the last, as the fixture page says.
13. u' = [u, stopgrad(l)] with u first; v = [u', z_reg, stopgrad(l)] =
    [u, l, z_reg, l] (width 2*width + 2*n_classes). u inside u' and v is not
    detached, so the regression heads back-propagate into LayerNorm and the
    id stack.
14. One-hot of column 0: the value is rounded to the nearest integer; a type
    outside [0, n_types) is an error.
15. Targets: class = round(ygen[:, 0]); the other targets are ygen columns
    1..6 in the order charge, pt, eta, sin_phi, cos_phi, energy. Only the
    first output of FFN_pt is used; pt gets no input column added.
16. Loss components: each is (sum over all real elements of the batch) /
    (number of real elements of the batch); the total is their sum.
17. Adam (Keras form), update t = 1, 2, ...:
      lr_dec = lr * decay_rate ** floor((t - 1) / decay_steps)
      m = beta1 m + (1 - beta1) g ;  v = beta2 v + (1 - beta2) g^2
      lr_t = lr_dec * sqrt(1 - beta2^t) / (1 - beta1^t)
      p = p - lr_t * m / (sqrt(v) + eps)
    The g used is the gradient of the total loss on the same batch; the
    recorded losses of step t are those of the weights before update t.
Comparison choices (CLI only):
18. Losses are compared per component (each of the 8 scalars has its own
    relative error), which is stricter than comparing the [8] vector as one
    tensor; the Adam losses likewise per component over the [steps] axis.
19. "If ||ref|| is 0, use the absolute norm": a reference tensor counts as
    zero when ||ref||_2 <= 1e-12 * (norm of all reference gradient tensors
    together); 1e-7 with --dtype float32. This matters:
    the gradient of every <layer>.dist.1.b (the last bias of ffn_dist) is
    ANALYTICALLY ZERO. The kernel depends on d only through d_i - d_j inside
    a bin (padding pairs are masked by m_i m_j, the diagonal is clamped), so
    a common shift of all d cancels; that bias only moves the LSH hash, which
    has no gradient. The float64 reference is ~1e-19 there while a float32
    implementation leaves ~1e-9 of rounding noise, so a relative error would
    be meaningless; the absolute norm of the difference is used instead (and
    flagged "ref~0" in the table).
    The Adam weight changes of tensors with a zero reference gradient
    (in the sense just given) are NOT compared (printed as
    SKIP with their absolute error, not counted): Keras Adam turns a
    gradient g into a change of about lr * g / (|g| + eps) with eps = 1e-7,
    so float32 rounding noise of 1e-9..1e-8 in an analytically zero gradient
    becomes 1% to 10% of a full step, while the float64 reference moves
    ~1e-12 of a step. The gradient itself is still checked, and the Adam
    arithmetic is checked on every other tensor.
20. --mutate NAME changes the largest-magnitude element g of the C gradient
    to 1.01 * g + sign(g) * a with a = 1e-3 * ||G|| (sign(0) taken as +1),
    so that the perturbation can never cancel and is always at least 1e-3
    relative to the tensor. Where the reference tensor is zero in the sense
    of 19 (or ||G|| = 0), a = 1e-3 absolute instead, since 1e-3 * ||noise||
    could not be detected by any metric.
21. A missing /c/ dataset (loss, a gradient, a hash layer) counts as a FAIL.

-----------------------------------------------------------------------------
Precision notes (measured with this twin run in float32 standing in for the
C code, compared with the float64 twin):
-----------------------------------------------------------------------------
 * Computing s_ij = |d_i|^2 - 2 d_i.d_j + |d_j|^2 in float32 cancels badly
   for close pairs (and LSH puts close pairs in the same bin). Gradients of
   the ffn_dist weights then differ from the float64 reference by ~1e-4
   (tiny preset) to ~1e-3 (hepscore22), above the 1e-4 tolerance, and the
   Adam weight changes by up to ~5e-3. Forming s accurately (e.g. as
   sum_k (d_ik - d_jk)^2, or the Gram product in float64) brings every
   gradient to <= ~3e-6 and every Adam change to <= ~1e-4 of the reference.
 * Weights are stored in float32, so a weight change smaller than ~1e4 ulp
   of the weight cannot be compared to 1e-4: with lr = 1e-5 the Adam changes
   differ by ~1e-3 from rounding alone; lr = 1e-3 in the fixture's Adam run
   avoids this.
 * --dtype float32 runs the twin itself in float32; it is a diagnostic, not
   the reference (the documented reference is float64).
"""

import argparse
import math
import sys
import time
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

LOSS_NAMES = ["total", "classification", "charge", "pt", "eta",
              "sin_phi", "cos_phi", "energy"]
HEAD_NAMES = ["ffn_id", "ffn_ch", "ffn_eta", "ffn_phi", "ffn_e", "ffn_pt"]


# =============================================================================
# Configuration
# =============================================================================
class Config:
    """Every dimension of the model, read from the fixture's root attributes."""

    INT_FIELDS = ["n_features", "n_types", "width", "n_graph_id",
                  "n_graph_reg", "bin_size", "max_num_bins", "dist_dim",
                  "dist_hidden", "head_hidden", "n_classes",
                  "id_hidden_layers", "ch_hidden_layers", "reg_hidden_layers"]
    FLOAT_FIELDS = ["dist_mult", "ln_eps"]

    def __init__(self, attrs):
        for f in self.INT_FIELDS:
            if f not in attrs:
                raise KeyError("fixture root attribute '%s' is missing" % f)
            setattr(self, f, int(np.asarray(attrs[f]).reshape(())))
        for f in self.FLOAT_FIELDS:
            if f not in attrs:
                raise KeyError("fixture root attribute '%s' is missing" % f)
            setattr(self, f, float(np.asarray(attrs[f]).reshape(())))
        preset = attrs.get("preset", "?")
        if isinstance(preset, bytes):
            preset = preset.decode()
        self.preset = str(preset)
        self.n_params = (int(np.asarray(attrs["n_params"]).reshape(()))
                         if "n_params" in attrs else None)
        # Input encoding: one-hot of column 0 + columns 1..n_features-1.
        self.enc_in = self.n_types + self.n_features - 1
        self.lsh_cols = self.max_num_bins // 2

    def head_dims(self, head):
        """(input width, hidden widths, output width) of one output head."""
        w, c, hh = self.width, self.n_classes, self.head_hidden
        if head == "ffn_id":
            return w, [hh >> i for i in range(self.id_hidden_layers)], c
        if head == "ffn_ch":
            return w, [hh >> i for i in range(self.ch_hidden_layers)], 1
        hid = [hh >> i for i in range(self.reg_hidden_layers)]
        if head == "ffn_eta":
            return w + c, hid, 1
        if head == "ffn_phi":
            return w + c, hid, 2
        if head == "ffn_e":
            return 2 * w + 2 * c, hid, 1
        if head == "ffn_pt":
            return 2 * w + 2 * c, hid, 2
        raise KeyError(head)

    def graph_layer_names(self):
        return (["cg_id%d" % i for i in range(self.n_graph_id)] +
                ["cg_reg%d" % i for i in range(self.n_graph_reg)])


# =============================================================================
# Model
# =============================================================================
def _new(shape, dtype):
    return torch.nn.Parameter(torch.zeros(*shape, dtype=dtype))


class Dense(torch.nn.Module):
    """y = x W + b with W stored [in, out] (the fixture's layout)."""

    def __init__(self, n_in, n_out, dtype):
        super().__init__()
        self.W = _new((n_in, n_out), dtype)
        self.b = _new((n_out,), dtype)

    def forward(self, x):
        return torch.addmm(self.b, x, self.W)


class Chain(torch.nn.Module):
    """Dense layers 0..n-1, elu after each layer but the last
    (or after every layer when act_last is given).
    torch names its parameters "<chain>.layers.<i>.W"; the fixture's names
    are "<chain>.<i>.W" and MLPF.spec_parameters() maps one to the other."""

    def __init__(self, dims, dtype, act=F.elu, act_last=None):
        super().__init__()
        self.layers = torch.nn.ModuleList(
            [Dense(dims[i], dims[i + 1], dtype) for i in range(len(dims) - 1)])
        self.act = act
        self.act_last = act_last

    def forward(self, x):
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < n - 1:
                x = self.act(x)
            elif self.act_last is not None:
                x = self.act_last(x)
        return x


class GraphLayer(torch.nn.Module):
    """One combined graph layer CG(x): ffn_dist, LSH binning, Gaussian
    kernel, GHConvDense. The residual addition is done by the caller."""

    def __init__(self, cfg, dtype):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.dist = Chain([w, cfg.dist_hidden, cfg.dist_dim], dtype)
        self.theta = _new((w, w), dtype)
        self.wh = _new((w, w), dtype)
        self.wt = _new((w, w), dtype)
        self.bt = _new((w,), dtype)
        # Fixed, non-trainable LSH projection [dist_dim, max_num_bins/2].
        self.register_buffer("R", torch.zeros(cfg.dist_dim, cfg.lsh_cols,
                                              dtype=dtype))

    # --- LSH ----------------------------------------------------------------
    def lsh_hash(self, xd_e):
        """Bucket of each element of one event (LongTensor [N_e])."""
        cfg = self.cfg
        n = xd_e.shape[0]
        nb = -(-n // cfg.bin_size)
        k = min(cfg.lsh_cols, max(1, nb // 2))
        p = xd_e.detach() @ self.R[:, :k]
        c = torch.cat([p, -p], dim=1)                       # [N_e, 2k]
        cmax = c.max(dim=1, keepdim=True).values
        col = torch.arange(2 * k, device=c.device).expand(n, 2 * k)
        # First maximum wins: smallest column index among the maxima.
        big = torch.full_like(col, 2 * k)
        return torch.where(c == cmax, col, big).min(dim=1).values

    # --- one event ----------------------------------------------------------
    def homogeneous_message(self, xd_e, h_e, hash_e):
        """F_hom = n * (A (n * H)) for the real rows of one event, in the
        event's row order. xd_e: [N_e, dist_dim], h_e = x Theta: [N_e, w]."""
        cfg = self.cfg
        S = cfg.bin_size
        n = xd_e.shape[0]
        nb = -(-n // S)
        n_pad = nb * S
        dt, dev = xd_e.dtype, xd_e.device
        # Stable sort by hash, ties by element index (unique composite key).
        idx = torch.arange(n, device=dev)
        perm = torch.argsort(hash_e.to(torch.int64) * n + idx)
        inv = torch.empty_like(perm)
        inv[perm] = idx
        pad = n_pad - n

        def binned(t):                    # sorted, zero-padded, [nb, S, c]
            t = t[perm]
            if pad:
                t = torch.cat([t, t.new_zeros(pad, t.shape[1])], dim=0)
            return t.reshape(nb, S, t.shape[1])

        d = binned(xd_e)
        hs = binned(h_e)
        m = torch.cat([torch.ones(n, dtype=dt, device=dev),
                       torch.zeros(pad, dtype=dt, device=dev)]).reshape(nb, S)
        # Gaussian kernel on the L2 distance, per bin, with the spec's
        # literal formula. (In float32 this formula loses accuracy for close
        # pairs by cancellation; see "Precision notes" at the top.)
        sq = (d * d).sum(dim=2)                                  # [nb, S]
        s = (sq.unsqueeze(2) - 2.0 * torch.bmm(d, d.transpose(1, 2))
             + sq.unsqueeze(1))
        dist = torch.sqrt(torch.clamp_min(s, 1e-6))
        a = torch.clamp(torch.exp(-cfg.dist_mult * dist), 0.0, 1.0)
        a = a * m.unsqueeze(2) * m.unsqueeze(1)                  # [nb, S, S]
        # Degree normalisation (self-loops included).
        deg = a.sum(dim=2)
        nrm = (torch.pow(deg + 1e-6, -0.5) * m).unsqueeze(2)     # [nb, S, 1]
        f_hom = nrm * torch.bmm(a, nrm * hs)                     # [nb, S, w]
        f_hom = f_hom.reshape(n_pad, -1)[:n]
        return f_hom[inv]                    # back to the event's row order

    def forward(self, x, offsets, hash_override=None):
        """x: [n_rows, width] (all events); offsets: python list of ints.
        Returns (CG(x) [n_rows, width], hash LongTensor [n_rows])."""
        xd = self.dist(x)                                        # ffn_dist
        h = x @ self.theta
        f_het = x @ self.wh
        g = torch.sigmoid(torch.addmm(self.bt, x, self.wt))
        parts, hashes = [], []
        for e in range(len(offsets) - 1):
            a, b = offsets[e], offsets[e + 1]
            if b == a:
                continue
            if hash_override is not None:
                he = hash_override[a:b].to(device=x.device, dtype=torch.int64)
            else:
                he = self.lsh_hash(xd[a:b])
            hashes.append(he)
            parts.append(self.homogeneous_message(xd[a:b], h[a:b], he))
        if not parts:                                  # no rows at all
            return torch.zeros_like(x), torch.zeros(0, dtype=torch.int64)
        f_hom = torch.cat(parts, dim=0)
        out = F.elu(g * f_hom + (1.0 - g) * f_het)
        return out, torch.cat(hashes)


class MLPF(torch.nn.Module):
    """The PFNetDense-style MLPF model of shared/spec/model.md."""

    def __init__(self, cfg, dtype=torch.float64):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        # Registration order == the fixture's documented parameter order.
        self.enc = Chain([cfg.enc_in, w, w], dtype, act=F.gelu, act_last=F.gelu)
        self.graph_names = cfg.graph_layer_names()
        for name in self.graph_names:
            self.add_module(name, GraphLayer(cfg, dtype))
        self.ln = torch.nn.Module()
        self.ln.gamma = torch.nn.Parameter(torch.ones(w, dtype=dtype))
        self.ln.beta = torch.nn.Parameter(torch.zeros(w, dtype=dtype))
        for head in HEAD_NAMES:
            n_in, hid, n_out = cfg.head_dims(head)
            self.add_module(head, Chain([n_in] + hid + [n_out], dtype))

    # --- names --------------------------------------------------------------
    @staticmethod
    def _spec_name(torch_name):
        return torch_name.replace(".layers.", ".")

    def spec_parameters(self):
        """OrderedDict spec name -> Parameter, in the documented order."""
        return OrderedDict((self._spec_name(n), p)
                           for n, p in self.named_parameters())

    def spec_buffers(self):
        return OrderedDict((self._spec_name(n), b)
                           for n, b in self.named_buffers())

    def n_trainable(self):
        return sum(p.numel() for p in self.parameters())

    # --- forward ------------------------------------------------------------
    def encode(self, X):
        cfg = self.cfg
        t = torch.round(X[:, 0]).to(torch.int64)
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= cfg.n_types):
            raise ValueError("element type outside [0, %d)" % cfg.n_types)
        onehot = F.one_hot(t, cfg.n_types).to(X.dtype)
        return torch.cat([onehot, X[:, 1:cfg.n_features]], dim=1)

    def layer_norm(self, z):
        mu = z.mean(dim=1, keepdim=True)
        var = ((z - mu) ** 2).mean(dim=1, keepdim=True)
        return ((z - mu) / torch.sqrt(var + self.cfg.ln_eps) * self.ln.gamma
                + self.ln.beta)

    def forward(self, X, offsets, hash_override=None, frozen_logits=None):
        """X: [n_rows, n_features]; offsets: list/array of n_events+1 ints.
        hash_override: optional dict layer name -> LongTensor [n_rows] of
        buckets to use instead of the computed ones (diagnosis only).
        frozen_logits: optional tensor used in place of stopgrad(l) as the
        input of the regression heads (finite-difference tests only: a
        stop-gradient means "hold this input fixed", which a perturbed
        forward pass must imitate).
        Returns a dict of predictions and the per-layer hashes."""
        offsets = [int(o) for o in offsets]
        h0 = self.enc(self.encode(X))
        hashes = {}

        def stack(prefix, n):
            z = h0
            for i in range(n):
                name = "%s%d" % (prefix, i)
                ov = None if hash_override is None else hash_override[name]
                dz, hashes[name] = getattr(self, name)(z, offsets, ov)
                z = z + dz
            return z

        z_id = stack("cg_id", self.cfg.n_graph_id)
        z_reg = stack("cg_reg", self.cfg.n_graph_reg)

        u = self.layer_norm(z_id)
        logits = self.ffn_id(u)
        ls = logits.detach() if frozen_logits is None else frozen_logits
        ls = ls.to(logits.dtype)                              # stop-gradient
        u2 = torch.cat([u, ls], dim=1)
        v = torch.cat([u2, z_reg, ls], dim=1)
        charge = self.ffn_ch(u)[:, 0]
        eta = X[:, 2] + self.ffn_eta(u2)[:, 0]
        phi = self.ffn_phi(u2)
        sin_phi = X[:, 3] + phi[:, 0]
        cos_phi = X[:, 4] + phi[:, 1]
        energy = torch.abs(X[:, 5] + self.ffn_e(v)[:, 0])
        pt = torch.abs(self.ffn_pt(v)[:, 0])
        return {"logits": logits, "charge": charge, "pt": pt, "eta": eta,
                "sin_phi": sin_phi, "cos_phi": cos_phi, "energy": energy,
                "hashes": hashes}


def huber(e, delta):
    ae = torch.abs(e)
    return torch.where(ae <= delta, 0.5 * e * e, delta * (ae - 0.5 * delta))


def loss_terms(pred, ygen):
    """Per-element loss terms [n_rows, 7] in the documented order."""
    cls = torch.round(ygen[:, 0]).to(torch.int64)
    w = (cls != 0).to(ygen.dtype)
    logits = pred["logits"]
    ce = torch.logsumexp(logits, dim=1) - logits.gather(1, cls[:, None])[:, 0]
    ch = (pred["charge"] - ygen[:, 1]) ** 2
    return torch.stack([
        ce,
        ch,
        w * huber(pred["pt"] - ygen[:, 2], 1.0),
        w * huber(pred["eta"] - ygen[:, 3], 0.1),
        w * huber(pred["sin_phi"] - ygen[:, 4], 0.1),
        w * huber(pred["cos_phi"] - ygen[:, 5], 0.1),
        w * huber(pred["energy"] - ygen[:, 6], 1.0),
    ], dim=1)


def compute(model, batch, hash_override=None, frozen_logits=None):
    """Forward pass + loss. batch: dict of torch tensors X, ygen and a list
    'offsets'. Returns dict with 'losses' (tensor [8]: total + components,
    each sum / n_rows, differentiable), 'hashes' and 'pred'."""
    pred = model(batch["X"], batch["offsets"], hash_override, frozen_logits)
    terms = loss_terms(pred, batch["ygen"])
    n = batch["X"].shape[0]
    comps = terms.sum(dim=0) / n
    losses = torch.cat([comps.sum().reshape(1), comps])
    return {"losses": losses, "hashes": pred["hashes"], "pred": pred}


def gradients(model, losses):
    """Gradient of the total loss w.r.t. every parameter (spec order)."""
    params = model.spec_parameters()
    gs = torch.autograd.grad(losses[0], list(params.values()),
                             allow_unused=True)
    return OrderedDict((n, torch.zeros_like(p) if g is None else g)
                       for (n, p), g in zip(params.items(), gs))


class KerasAdam:
    """Adam in the Keras form with staircase exponential decay, by hand."""

    def __init__(self, params, lr, beta1, beta2, eps, decay_rate, decay_steps):
        self.params = list(params)
        self.lr, self.b1, self.b2, self.eps = lr, beta1, beta2, eps
        self.decay_rate, self.decay_steps = decay_rate, decay_steps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    @torch.no_grad()
    def step(self, grads):
        self.t += 1
        t = self.t
        lr = self.lr * self.decay_rate ** math.floor((t - 1) / self.decay_steps)
        lr_t = lr * math.sqrt(1.0 - self.b2 ** t) / (1.0 - self.b1 ** t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m.mul_(self.b1).add_((1.0 - self.b1) * g)
            v.mul_(self.b2).add_((1.0 - self.b2) * g * g)
            p.sub_(lr_t * m / (torch.sqrt(v) + self.eps))


def adam_run(model, batch, steps, **hp):
    """Runs `steps` Adam updates on one batch. Returns the losses recorded
    before each update (numpy [steps, 8], float64)."""
    params = model.spec_parameters()
    opt = KerasAdam(params.values(), **hp)
    rec = []
    for _ in range(steps):
        out = compute(model, batch)
        rec.append(out["losses"].detach().cpu().double().numpy())
        g = gradients(model, out["losses"])
        opt.step(list(g.values()))
    return np.array(rec)


# =============================================================================
# Fixture I/O
# =============================================================================
def _attrs_dict(attrs):
    out = {}
    for k, v in attrs.items():
        if isinstance(v, bytes):
            v = v.decode()
        out[k] = v
    return out


def load_fixture(path):
    """Reads a parity fixture into numpy arrays (nothing converted)."""
    import h5py
    fx = {"params": OrderedDict(), "buffers": OrderedDict(), "c": None}
    with h5py.File(path, "r") as f:
        fx["attrs"] = _attrs_dict(f.attrs)
        for grp in ("params", "buffers"):
            if grp in f:
                for k in f[grp].keys():
                    fx[grp][k] = f[grp][k][()]
        fx["batch"] = {k: f["batch"][k][()] for k in ("X", "ygen", "offsets")}
        if "c" in f:
            c = f["c"]
            cd = {"loss": c["loss"][()] if "loss" in c else None,
                  "grads": OrderedDict(), "hash": OrderedDict(), "adam": None}
            if "grads" in c:
                for k in c["grads"].keys():
                    cd["grads"][k] = c["grads"][k][()]
            if "hash" in c:
                for k in c["hash"].keys():
                    cd["hash"][k] = c["hash"][k][()]
            if "adam" in c:
                a = c["adam"]
                ad = {"attrs": _attrs_dict(a.attrs),
                      "loss": a["loss"][()] if "loss" in a else None,
                      "params": OrderedDict()}
                if "params" in a:
                    for k in a["params"].keys():
                        ad["params"][k] = a["params"][k][()]
                cd["adam"] = ad
            fx["c"] = cd
    return fx


def build_model(attrs, dtype=torch.float64):
    """Model with the dimensions of the fixture's root attributes."""
    return MLPF(Config(attrs), dtype=dtype)


def load_weights(model, fx, params=None):
    """Copies /params and /buffers (or the given params dict) into the model.
    Raises on a missing name or a shape mismatch; returns the list of names
    in the file that the model does not have."""
    src = fx["params"] if params is None else params
    mine = model.spec_parameters()
    with torch.no_grad():
        for name, p in mine.items():
            if name not in src:
                raise KeyError("parameter '%s' missing from the fixture" % name)
            a = np.asarray(src[name])
            if tuple(a.shape) != tuple(p.shape):
                raise ValueError("parameter '%s': shape %s in file, %s expected"
                                 % (name, a.shape, tuple(p.shape)))
            p.copy_(torch.from_numpy(a.astype(np.float64)))
        for name, b in model.spec_buffers().items():
            if name not in fx["buffers"]:
                raise KeyError("buffer '%s' missing from the fixture" % name)
            a = np.asarray(fx["buffers"][name])
            if tuple(a.shape) != tuple(b.shape):
                raise ValueError("buffer '%s': shape %s in file, %s expected"
                                 % (name, a.shape, tuple(b.shape)))
            b.copy_(torch.from_numpy(a.astype(np.float64)))
    return sorted(set(src) - set(mine))


def batch_to_torch(batch, dtype=torch.float64):
    off = [int(o) for o in np.asarray(batch["offsets"]).reshape(-1)]
    X = torch.from_numpy(np.asarray(batch["X"]).astype(np.float64)).to(dtype)
    y = torch.from_numpy(np.asarray(batch["ygen"]).astype(np.float64)).to(dtype)
    if off[0] != 0 or off[-1] != X.shape[0] or any(
            off[i] > off[i + 1] for i in range(len(off) - 1)):
        raise ValueError("bad offsets: %s... for %d rows" % (off[:4], X.shape[0]))
    return {"X": X, "ygen": y, "offsets": off}


# =============================================================================
# Command line: check
# =============================================================================
# A reference tensor is "zero" below this fraction of the norm of all the
# reference tensors of its kind (choice 19 at the top): far above float64
# rounding noise (~1e-19 relative seen), far below any real gradient tensor
# (>= 1e-5 relative seen). With --dtype float32 the noise is ~1e-9, hence
# a larger fraction there.
ZERO_FRACTION = {torch.float64: 1e-12, torch.float32: 1e-7}


def norm2(a):
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64).ravel()))


def rel_error(c, ref, zero_below=0.0):
    """||c - ref||_2 / ||ref||_2; the absolute norm ||c - ref||_2 when
    ||ref||_2 <= zero_below (a reference that is zero up to rounding).
    Returns (error, reference_is_zero)."""
    c = np.asarray(c, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    diff = norm2(c - ref)
    nref = norm2(ref)
    if not np.isfinite(diff):
        return float("inf"), False
    if nref <= zero_below or nref == 0.0:
        return diff, True
    return diff / nref, False


def mutate(g, ref_is_zero=False):
    """The perturbation of --mutate (see choice 20 at the top)."""
    g = np.array(g, dtype=np.float32, copy=True)
    flat = g.reshape(-1)
    nrm = norm2(flat)
    i = int(np.argmax(np.abs(flat)))
    sgn = 1.0 if flat[i] >= 0 else -1.0
    add = 1e-3 * nrm if (nrm > 0 and not ref_is_zero) else 1e-3
    flat[i] = flat[i] * 1.01 + sgn * add
    return g


class Report:
    def __init__(self, rtol):
        self.rtol = rtol
        self.rows = []           # (name, ok, err)

    def line(self, name, shape, err, ok=None, note=""):
        if ok is None:
            ok = bool(np.isfinite(err) and err <= self.rtol)
        self.rows.append((name, ok, err))
        shp = "x".join(str(s) for s in shape) if shape else "scalar"
        print("%-34s %-12s %11.3e  %-4s %s" % (name, shp, err,
                                              "OK" if ok else "FAIL", note))
        sys.stdout.flush()

    def skip(self, name, shape, err, note=""):
        """Printed for information only; not counted as compared."""
        shp = "x".join(str(s) for s in shape) if shape else "scalar"
        print("%-34s %-12s %11.3e  SKIP %s" % (name, shp, err, note))

    def missing(self, name, what="missing in fixture"):
        self.rows.append((name, False, float("inf")))
        print("%-34s %-12s %11s  FAIL %s" % (name, "-", "-", what))

    def summary(self):
        nfail = sum(1 for r in self.rows if not r[1])
        worst = max(self.rows, key=lambda r: r[2]) if self.rows else None
        print("-" * 72)
        msg = "SUMMARY: %d quantities compared, %d FAIL" % (len(self.rows), nfail)
        if worst is not None:
            msg += "; worst %s = %.3e" % (worst[0], worst[2])
        msg += "; rtol %.1e -> %s" % (self.rtol, "PASS" if nfail == 0 else "FAIL")
        print(msg)
        return nfail == 0


def cmd_check(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = {"float64": torch.float64, "float32": torch.float32}[args.dtype]
    t0 = time.time()
    fx = load_fixture(args.fixture)
    cfg = Config(fx["attrs"])
    model = MLPF(cfg, dtype=dtype)
    names = list(model.spec_parameters().keys())

    if args.mutate == "list":
        for n in names:
            print(n)
        return 0
    cd = fx["c"]
    if cd is None:
        print("error: fixture has no /c group", file=sys.stderr)
        return 2
    if args.mutate is not None and args.mutate not in names + ["all"]:
        print("error: --mutate: no gradient tensor '%s' (try --mutate list)"
              % args.mutate, file=sys.stderr)
        return 2

    extra = load_weights(model, fx)
    batch = batch_to_torch(fx["batch"], dtype)
    n_rows, n_ev = batch["X"].shape[0], len(batch["offsets"]) - 1
    print("# twin: preset %s, width %d, bin_size %d, %d events, %d rows, "
          "dtype %s, %d threads" % (cfg.preset, cfg.width, cfg.bin_size, n_ev,
                                    n_rows, args.dtype, torch.get_num_threads()))
    rep = Report(args.rtol)
    print("%-34s %-12s %11s  %s" % ("quantity", "shape", "rel.err", "status"))
    print("-" * 72)

    # Structure: parameter count and names.
    count = model.n_trainable()
    if cfg.n_params is not None:
        rep.line("n_params", (), 0.0 if count == cfg.n_params else float("inf"),
                 ok=(count == cfg.n_params),
                 note="twin %d, file %d" % (count, cfg.n_params))
    for n in extra:
        rep.missing("params/" + n, "in fixture but not in the twin model")

    # Hash override (diagnosis): use the C buckets instead of our own.
    override = None
    if args.use_c_hash:
        override = {}
        for ln in cfg.graph_layer_names():
            if ln not in cd["hash"]:
                print("error: --use-c-hash: /c/hash/%s missing" % ln,
                      file=sys.stderr)
                return 2
            override[ln] = torch.from_numpy(cd["hash"][ln].astype(np.int64))

    # Forward + backward.
    t1 = time.time()
    out = compute(model, batch, override)
    grads = gradients(model, out["losses"])
    t_fb = time.time() - t1
    ref_loss = out["losses"].detach().double().numpy()

    # Hashes.
    for ln in cfg.graph_layer_names():
        if ln not in cd["hash"]:
            rep.missing("hash/" + ln)
            continue
        ch = np.asarray(cd["hash"][ln]).astype(np.int64).reshape(-1)
        mine = out["hashes"][ln].numpy()
        if ch.shape != mine.shape:
            rep.line("hash/" + ln, ch.shape, float("inf"), ok=False,
                     note="length %d, expected %d" % (ch.size, mine.size))
            continue
        nd = int((ch != mine).sum())
        rep.line("hash/" + ln, ch.shape, nd / max(1, ch.size), ok=(nd == 0),
                 note="%d rows differ%s" % (nd, " (C hash used)" if override
                                            else ""))

    # Losses.
    if cd["loss"] is None:
        rep.missing("loss")
    else:
        cl = np.asarray(cd["loss"], dtype=np.float64).reshape(-1)
        for i, nm in enumerate(LOSS_NAMES):
            if i >= cl.size:
                rep.missing("loss/" + nm)
                continue
            rep.line("loss/" + nm, (), rel_error(cl[i], ref_loss[i])[0],
                     note="c %.9g ref %.9g" % (cl[i], ref_loss[i]))

    # Gradients.
    ref_g = OrderedDict((n, g.detach().double().numpy())
                        for n, g in grads.items())
    # --fp32-floor: how far the twin itself lands from this reference when it
    # computes in float32. A quantity passes if it is within rtol, or within
    # fp32_floor times the twin's own float32 error (what float32 can reach
    # on this batch; see docs/parity-fixture.md).
    floor = {}
    if args.fp32_floor:
        m32 = MLPF(cfg, dtype=torch.float32)
        load_weights(m32, fx)
        b32 = batch_to_torch(fx["batch"], torch.float32)
        o32 = compute(m32, b32, override)
        g32 = gradients(m32, o32["losses"])
        zero32 = ZERO_FRACTION[dtype] * math.sqrt(sum(norm2(g) ** 2 for g in ref_g.values()))
        for n, g in g32.items():
            if norm2(ref_g[n]) > zero32:   # no relative floor for a zero reference
                floor["grads/" + n] = rel_error(g.detach().double().numpy(), ref_g[n])[0]

    def tol(key):
        return max(args.rtol, args.fp32_floor * floor.get(key, 0.0))

    def judged(key, shape, err, note=""):
        t = tol(key)
        if t > args.rtol:
            note = (note + " " if note else "") + "(fp32 floor %.1e)" % t
        rep.line(key, shape, err, ok=bool(np.isfinite(err) and err <= t), note=note)
    zero_g = ZERO_FRACTION[dtype] * math.sqrt(sum(norm2(g) ** 2
                                           for g in ref_g.values()))
    zero_grad = set(n for n, g in ref_g.items() if norm2(g) <= zero_g)
    if args.mutate not in (None, "all") and args.mutate in cd["grads"]:
        cd["grads"][args.mutate] = mutate(
            cd["grads"][args.mutate], norm2(ref_g[args.mutate]) <= zero_g)
    for n, g in ref_g.items():
        if n not in cd["grads"]:
            rep.missing("grads/" + n)
            continue
        cg = cd["grads"][n]
        if tuple(cg.shape) != tuple(g.shape):
            rep.line("grads/" + n, cg.shape, float("inf"), ok=False,
                     note="shape mismatch, expected %s" % (tuple(g.shape),))
            continue
        err, is0 = rel_error(cg, g, zero_g)
        note = "ref~0, absolute" if is0 else ""
        if n == args.mutate:
            note += " (mutated)"
        judged("grads/" + n, cg.shape, err, note)

    # --mutate all: every single-tensor error must be detected.
    if args.mutate == "all":
        missed = []
        for n, g in ref_g.items():
            is0 = norm2(g) <= zero_g
            err, _ = rel_error(mutate(cd["grads"][n], is0), g, zero_g)
            if np.isfinite(err) and err <= tol("grads/" + n):
                missed.append(n)
        print("mutation check: %d of %d single-tensor gradient errors detected"
              % (len(ref_g) - len(missed), len(ref_g)))
        for n in missed:
            print("  NOT DETECTED: " + n)
        return 0 if not missed else 1

    # Adam.
    t_adam = 0.0
    ad = cd["adam"]
    if ad is not None:
        at = ad["attrs"]
        steps = int(at["steps"])
        hp = dict(lr=float(at["lr"]), beta1=float(at["beta1"]),
                  beta2=float(at["beta2"]), eps=float(at["eps"]),
                  decay_rate=float(at["decay_rate"]),
                  decay_steps=float(at["decay_steps"]))
        t1 = time.time()
        amodel = MLPF(cfg, dtype=dtype)
        load_weights(amodel, fx)
        init = {n: p.detach().double().clone()
                for n, p in amodel.spec_parameters().items()}
        rec = adam_run(amodel, batch, steps, **hp)
        if args.fp32_floor:
            a32 = MLPF(cfg, dtype=torch.float32)
            load_weights(a32, fx)
            adam_run(a32, batch_to_torch(fx["batch"], torch.float32), steps, **hp)
            after32 = {n: p.detach().double() for n, p in a32.spec_parameters().items()}
        t_adam = time.time() - t1
        if ad["loss"] is None:
            rep.missing("adam/loss")
        else:
            cl = np.asarray(ad["loss"], dtype=np.float64).reshape(-1, 8)
            if cl.shape[0] != steps:
                rep.line("adam/loss", cl.shape, float("inf"), ok=False,
                         note="%d steps in file, attribute says %d"
                         % (cl.shape[0], steps))
            else:
                for i, nm in enumerate(LOSS_NAMES):
                    rep.line("adam/loss/" + nm, (steps,),
                             rel_error(cl[:, i], rec[:, i])[0])
        ref_d = OrderedDict((n, (p.detach().double() - init[n]).numpy())
                            for n, p in amodel.spec_parameters().items())
        for n, ref_delta in ref_d.items():
            if n not in ad["params"]:
                rep.missing("adam/params/" + n)
                continue
            c_after = np.asarray(ad["params"][n], dtype=np.float64)
            if c_after.shape != ref_delta.shape:
                rep.line("adam/delta/" + n, c_after.shape, float("inf"),
                         ok=False, note="shape mismatch")
                continue
            c_delta = c_after - np.asarray(fx["params"][n], dtype=np.float64)
            err, _ = rel_error(c_delta, ref_delta)
            if n in zero_grad:
                rep.skip("adam/delta/" + n, c_after.shape,
                         rel_error(c_delta, ref_delta, float("inf"))[0],
                         note="zero gradient: absolute, not counted")
            else:
                if args.fp32_floor:
                    floor["adam/delta/" + n] = rel_error(
                        (after32[n] - init[n]).numpy(), ref_delta)[0]
                if args.adam_deltas_info:
                    rep.skip("adam/delta/" + n, c_after.shape, err,
                             note="information only (--adam-deltas-info)")
                else:
                    judged("adam/delta/" + n, c_after.shape, err)
        print("# adam: %d steps, lr %g, beta1 %g, beta2 %g, eps %g, "
              "decay %g every %g" % (steps, hp["lr"], hp["beta1"], hp["beta2"],
                                     hp["eps"], hp["decay_rate"],
                                     hp["decay_steps"]))
    print("# time: forward+backward %.2f s, adam %.2f s, total %.2f s"
          % (t_fb, t_adam, time.time() - t0))
    return 0 if rep.summary() else 1


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="PyTorch twin of the MLPF model: parity check against "
                    "a fixture written by tests/parity_dump.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="compare the C results in a fixture")
    c.add_argument("fixture")
    c.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    c.add_argument("--rtol", type=float, default=1e-4)
    c.add_argument("--mutate", metavar="NAME", default=None,
                   help="perturb the C gradient NAME ('list' prints names, "
                        "'all' checks that each single-tensor error is detected)")
    c.add_argument("--threads", type=int, default=0)
    c.add_argument("--adam-deltas-info", action="store_true",
                   help="print the Adam weight changes without judging them "
                        "(for batches where float32 gradient noise, which Adam "
                        "normalises to full-size steps, dominates them)")
    c.add_argument("--fp32-floor", type=float, default=0.0, metavar="F",
                   help="also run the twin in float32; a quantity passes when "
                        "within rtol or within F times the twin's own float32 "
                        "error against the float64 reference")
    c.add_argument("--use-c-hash", action="store_true",
                   help="diagnosis: use /c/hash buckets in the twin's forward "
                        "pass (the Adam run still hashes by itself)")
    args = ap.parse_args(argv)
    if args.cmd == "check":
        return cmd_check(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
