#!/usr/bin/python3
# -*- coding: utf-8 -*-
"""torch_bench.py: the MLPF model of mlpfbench as a PyTorch user would write it.

An independent PyTorch benchmark of the HEPscore-2022 MLPF model
(shared/spec/model.md), written from the specification, docs/data-format.md
and scripts/torch_twin.py (which it imports only for --check), never from the
C sources. Unlike torch_twin.py (float64, ragged events, one Python loop per
event, made for parity) this is the ordinary way to write the model in
PyTorch: float32, nn.Linear / nn.LayerNorm / nn.Sequential, zero-padded
batches [B, Np, features], everything vectorised over the batch and the bins
(bmm, gather), autograd for the backward pass and torch.optim.Adam.

Usage (Debian's /usr/bin/python3 with python3-torch, numpy, h5py, or the
python of any other PyTorch installation, e.g. the venv of make bench-peers):

    torch_bench.py --data DIR [--preset hepscore22|tiny] [--batch-size B]
                   [--threads T] [--steps N] [--warmup W] [--inference]
                   [--compile] [--precision fp32|bf16] [--device cpu|cuda]
                   [--json OUT] [--seed S] [--no-crc] [--no-verify]
    torch_bench.py --check [--compile] [--device cpu|cuda] [--data DIR]
                   [--threads T] [--seed S] [--rtol R]
    torch_bench.py --describe [--device cpu|cuda]

  --data DIR      an mlpfbench dataset (DIR/manifest.json, DIR/train/*.h5);
                  the first (W + N) * B training events are read, in the
                  dataset's order (manifest shard order, then event order).
                  Step t uses events [t*B, (t+1)*B): the W warm-up steps use
                  the first W*B events, the timed steps the next N*B.
  --preset        hepscore22 (default, 6,786,861 parameters) or tiny.
  --batch-size B  events per step (default 1).
  --threads T     torch.set_num_threads(T); default: every core this process
                  may run on.
  --steps N       timed steps (default 3); --warmup W untimed steps (default 1).
  --inference     forward pass only, under torch.no_grad() (model.eval()),
                  same timing scheme; default is training (forward, backward,
                  Adam step).
  --compile       run the model through torch.compile(model, dynamic=True)
                  (PyTorch >= 2.0; with an older torch: exit 2 and one line
                  saying so). Compiling happens in the first warm-up step;
                  its time is reported apart (warmup_seconds,
                  compile_seconds), and any graph compiled during the timed
                  steps (a recompile) is counted (compiles_in_timed_steps).
                  The loss and Adam stay eager, as a user would write it.
  --precision     fp32 (default) or bf16: forward pass and loss under
                  torch.autocast(dtype=torch.bfloat16), weights, gradients
                  and Adam in float32 (the usual mixed-precision training).
  --device        torch device (default cpu); cuda: GPU 0, peak GPU memory
                  (torch.cuda.max_memory_allocated) reported as well.
  --json OUT      also write the result as a JSON object (keys: mode, preset,
                  batch_size, threads, steps, events, elements, seconds,
                  events_per_s, s_per_step, peak_rss_mib,
                  peak_rss_mib_per_event, torch_version, padded_elements,
                  execution, precision, peer, check, and a few more for
                  information).
  --seed S        seed of the weight initialisation (torch.manual_seed).
  --no-crc        do not verify the CRC-32 of the shards that are read (their
                  size is always checked against the manifest).
  --no-verify     skip the check of the first step (below). Without it, the
                  result carries check = {passed, max_rel, tolerance, ...}:
                  the 8 losses (total + 7 components) of the first step
                  (warm-up step 0: the model's initial weights, the first B
                  events, in this run's execution and precision) against
                  torch_twin.compute in float64 on the CPU on the same
                  events unpadded with the same initial weights. Passed when
                  every one of the 8 agrees to the precision's tolerance
                  (CHECK_RTOL: fp32 1e-3, bf16 0.15, relative; see there
                  for why). The reference is computed after the timed steps
                  and after the peak memory was read, so it changes neither.
                  make bench counts a figure only when its check passed.
  --check         compare this padded, batched model (float64, tiny preset)
                  with torch_twin.compute on the same events unpadded and the
                  same weights: the 8 losses (total + 7 components), the
                  gradient of every parameter and the LSH bucket of every
                  element. With --compile the compiled model is compared
                  (its forward and its backward). Exit 0 if the largest
                  relative difference is below --rtol (default 1e-5), 1
                  otherwise. With --data the events are short samples of the
                  first dataset events, otherwise random events.
  --describe      print what this PyTorch is (version, where it is installed,
                  BLAS backend, CPU capability, whether torch.compile and a
                  GPU are there) as one JSON object, and exit.

Measured quantities:
  seconds          wall time (time.perf_counter) of the N timed steps; batches
                   are collated (padded) before timing, so no I/O is timed.
  events, elements real events and real elements of the timed steps;
                   padded_elements = sum over timed steps of B * Np.
  events_per_s     events / seconds (real events, as the spec's throughput).
  peak_rss_mib     ru_maxrss of the process at the end, MiB.
  peak_rss_mib_per_event
                   (peak_rss - RSS right after the model was built and all
                   batches were read and collated) / B. The baseline is the
                   current RSS (/proc/self/statm) at that moment; what the
                   first step allocates once (gradients and the two Adam
                   moments: 3 x 27 MB for hepscore22) is in the difference.
  peak_gpu_mib, peak_gpu_mib_per_event (--device cuda)
                   torch.cuda.max_memory_allocated at the end, and its excess
                   over the allocation at the same baseline, / B.
  warmup_seconds   wall time of each warm-up step (synchronised); with
                   --compile the first one holds the compiling.
  compile_seconds  (--compile) the warm-up steps' time beyond W steady steps
                   (s_per_step): what compiling cost, the on-disk caches of
                   torch.compile included (a second run compiles faster).
  compiles_in_timed_steps (--compile)
                   graphs that torch.compile compiled during the timed steps
                   (dynamo graphs + inductor compilations, from
                   torch._dynamo.utils.counters): 0 unless something
                   recompiled; null where this torch has no such counters.

-----------------------------------------------------------------------------
Padding: what padded elements do
-----------------------------------------------------------------------------
A batch of B events is one tensor X [B, Np, 12] (targets [B, Np, 7], mask
m [B, Np]), Np = S * ceil(max_e N_e / S), S = bin_size (640; 16 for tiny).
Rows N_e..Np-1 of event e are zeros (element type 0, target class 0), m = 0.

 * Row-wise layers (encoder, ffn_dist, x Theta, x Wh, x Wt + bt, LayerNorm,
   output heads) are computed on every row, padding included (that is the
   cost of padding); they never mix rows, so padding rows cannot change a
   real row.
 * Message passing. Each event is binned on its own, as the spec says:
   nb_e = ceil(N_e / S) and k_e = min(max_num_bins/2, max(1, nb_e // 2)) come
   from the event's REAL length N_e (counted from the mask), not from Np.
   The LSH hash of a padding row is replaced by 2 * k_max (beyond every real
   bucket), so the sort (key hash * Np + row index, a stable sort) puts the
   event's real elements first, in the spec's order, and all padding last.
   Bin b of event e holds sorted positions [S b, S b + S): bins 0..nb_e-1
   are exactly the spec's bins (the last one topped up with padding rows),
   and the bins nb_e..Np/S-1 hold only padding. The kernel A is still
   computed over those rows (all B * Np/S bins go through one bmm), but
   A_ij is multiplied by m_i m_j, so every entry touching a padding row is
   zero: padding rows send nothing, receive nothing, have degree 0 and
   n_i = (0 + 1e-6)^(-1/2) * m_i = 0. The GHConvDense output is multiplied
   by m, so a padding row's residual update is 0 (its z stays the encoder
   output of a zero input), exactly as the spec's "padding rows vanish".
 * Loss: each of the 7 per-element terms is multiplied by the mask, summed
   over all rows of the batch and divided by the number of REAL elements.
   Padding rows therefore get zero gradient, and their finite (never
   inf/NaN) activations cannot leak into any parameter's gradient.
So the padded model computes the same function as the ragged spec model for
every component, and --check expects agreement to rounding (float64: ~1e-15
seen). The only thing padding changes is the amount of work: B * Np rows and
B * Np/S bins of S x S instead of sum_e N_e rows and sum_e nb_e bins.
(TensorFlow's reference took nb, hence k and the bin layout, from the padded
length of the whole batch; this script follows the spec instead: per event.)

-----------------------------------------------------------------------------
Readings of the specification (the same as torch_twin.py's, numbered as there)
-----------------------------------------------------------------------------
 1. Cross-entropy and the charge loss are not weighted by w_i = [class != 0];
    only the five Huber terms (pt, eta, sin_phi, cos_phi, energy) are.
 2. k_e = min(max_num_bins // 2, max(1, nb_e // 2)).
 3. hash = argmax over the 2k_e columns of C = [P, -P], P = stopgrad(xd) R[:, :k_e],
    first maximum wins (torch.argmax returns the first maximal index). With
    a batch, P = xd R with every one of R's k_max = max_num_bins/2 columns
    and the columns j >= k_e of both halves set to -inf; the winning column
    c maps to hash c (c < k_max) or k_e + (c - k_max) (the -P half), i.e.
    exactly the event's own [0, 2k_e). (k_max is the constant, not the
    batch's largest k_e: a size read from a tensor, int(k.max()), would
    break torch.compile's graph inside the layer loop and leave the whole
    forward pass eager. The extra columns cost ~0.4% of the forward
    pass's FLOPs, ~0.15% of a training step's.)
 4. Stable sort by hash, ties by row index (unique key hash * Np + index).
 5. |.| in energy and pt: torch.abs, gradient 0 at exactly 0.
 6. Huber via F.huber_loss (e^2/2 for |e| < d, d(|e| - d/2) otherwise; at
    |e| = d both branches agree in value and slope).
 7. D_ij = sqrt(clamp_min((|d_i|^2 - 2 d_i.d_j) + |d_j|^2, 1e-6)), in that
    literal order (the spec's formula; it cancels in float32 for close pairs,
    see torch_twin.py's precision notes, which a benchmark accepts).
 8. clip(exp(-0.1 D), 0, 1) literally (torch.clamp).
 9./10. Padding: see above.
11. LayerNorm = nn.LayerNorm(width, eps=1e-3): biased variance (Keras's form).
12. Head hidden widths head_hidden >> i; elu after every layer but the last.
13. u' = [u, stopgrad(l)], v = [u', z_reg, stopgrad(l)] = [u, l, z_reg, l];
    u is not detached.
14. One-hot of round(X[:, 0]) over 3 types (padding rows are type 0).
15. class = round(ygen[:, 0]); targets charge, pt, eta, sin_phi, cos_phi,
    energy = ygen columns 1..6; only output 0 of FFN_pt is used.
16. Each loss component = (sum over real elements) / (number of real
    elements of the batch); total = sum of the 7 components.
Optimiser: torch.optim.Adam(lr=1e-5, betas=(0.9, 0.999), eps=1e-7) and
StepLR(step_size=10000, gamma=0.99), stepped once per optimiser step (the
spec's staircase decay). One honest difference from the spec's Keras form:
PyTorch adds eps to sqrt(v_hat) = sqrt(v) / sqrt(1 - beta2^t), Keras adds it
to sqrt(v); the two updates are identical with PyTorch's eps replaced by
eps * sqrt(1 - beta2^t) ("epsilon hat"), i.e. they differ only for
parameters whose |gradient| is around 1e-7 or below. torch.optim.Adam has no
option for the Keras placement, and the benchmark uses the library optimiser
as a user would; --check therefore compares the loss and the gradients (what
the model defines), not Adam updates.
Initialisation (not compared with the C code, which has its own portable
generator): dense weights xavier_uniform_, biases 0, Theta, Wh, Wt, bt and R
normal(0, 0.05), LayerNorm gamma 1, beta 0, from torch.manual_seed(seed).

Dataset errors (missing manifest or shard, a size or CRC that differs from
the manifest, missing /X, /ygen or /offsets, wrong shapes or dtypes, bad
offsets, unknown element types, too few events) end the script with exit
status 2 and a message naming the file.
"""

import argparse
import contextlib
import json
import math
import os
import re
import resource
import sys
import time
import zlib
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PROG = "torch_bench.py"
LOSS_NAMES = ["total", "classification", "charge", "pt", "eta",
              "sin_phi", "cos_phi", "energy"]

# Every dimension of the model (the attribute names of docs/parity-fixture.md,
# so that torch_twin.Config can read the same dict).
PRESETS = {
    "hepscore22": dict(preset="hepscore22", n_features=12, n_types=3,
                       width=512, n_graph_id=3, n_graph_reg=3, bin_size=640,
                       max_num_bins=100, dist_dim=128, dist_hidden=128,
                       dist_mult=0.1, head_hidden=256, n_classes=6,
                       id_hidden_layers=4, ch_hidden_layers=2,
                       reg_hidden_layers=3, ln_eps=1e-3, n_params=6786861),
    "tiny": dict(preset="tiny", n_features=12, n_types=3, width=32,
                 n_graph_id=3, n_graph_reg=3, bin_size=16, max_num_bins=8,
                 dist_dim=8, dist_hidden=8, dist_mult=0.1, head_hidden=16,
                 n_classes=6, id_hidden_layers=4, ch_hidden_layers=2,
                 reg_hidden_layers=3, ln_eps=1e-3),
}
ADAM = dict(lr=1e-5, betas=(0.9, 0.999), eps=1e-7)
LR_DECAY_STEPS, LR_DECAY_RATE = 10000, 0.99


class BenchError(Exception):
    """A user-facing error (bad dataset, bad arguments): exit status 2."""


# =============================================================================
# Model
# =============================================================================
def mlp(dims, act):
    """Linear layers dims[0] -> ... -> dims[-1], `act` after all but the last."""
    layers = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


class CombinedGraphLayer(nn.Module):
    """ffn_dist + LSH binning + Gaussian kernel + GHConvDense, on a padded
    batch x [B, Np, width] with mask m [B, Np]. Returns CG(x) (the caller
    adds the residual) and the LSH buckets [B, Np] (-1 on padding)."""

    def __init__(self, cfg):
        super().__init__()
        w = cfg["width"]
        self.bin_size = cfg["bin_size"]
        self.max_k = cfg["max_num_bins"] // 2
        self.dist_mult = cfg["dist_mult"]
        self.dist = mlp([w, cfg["dist_hidden"], cfg["dist_dim"]], nn.ELU)
        self.theta = nn.Linear(w, w, bias=False)
        self.wh = nn.Linear(w, w, bias=False)
        self.wt = nn.Linear(w, w)                  # Wt and bt
        self.register_buffer("R", torch.zeros(cfg["dist_dim"], self.max_k))

    def forward(self, x, m, k):
        B, Np, w = x.shape
        S = self.bin_size
        nb = Np // S
        xd = self.dist(x)                                       # [B, Np, dd]

        # LSH buckets and the sort (no gradient).
        with torch.no_grad():
            # every column of R, those beyond an event's k_e masked below:
            # no data-dependent size, so torch.compile sees one graph
            kmax = self.max_k
            p = xd @ self.R                                     # [B, Np, kmax]
            cols = torch.arange(kmax, device=x.device)
            valid = (cols[None, :] < k[:, None]).repeat(1, 2)   # [B, 2kmax]
            c = torch.cat([p, -p], dim=2).masked_fill(
                ~valid[:, None, :], float("-inf"))
            win = c.argmax(dim=2)                               # first maximum
            hsh = torch.where(win < kmax, win, win - kmax + k[:, None])
            real = m > 0
            key = torch.where(real, hsh, torch.full_like(hsh, 2 * kmax))
            rows = torch.arange(Np, device=x.device)
            perm = torch.argsort(key * Np + rows[None, :], dim=1)   # [B, Np]
            inv = torch.argsort(perm, dim=1)
            hsh = torch.where(real, hsh, torch.full_like(hsh, -1))

        def to_bins(t):              # [B, Np, c] -> sorted [B*nb, S, c]
            idx = perm.unsqueeze(2).expand(-1, -1, t.shape[2])
            return torch.gather(t, 1, idx).reshape(B * nb, S, t.shape[2])

        d = to_bins(xd)
        hb = to_bins(self.theta(x))
        mb = torch.gather(m, 1, perm).reshape(B * nb, S)

        # Gaussian kernel on the L2 distance inside each bin.
        sq = (d * d).sum(dim=2)                                 # [B*nb, S]
        s = sq.unsqueeze(2) - 2.0 * torch.bmm(d, d.transpose(1, 2)) \
            + sq.unsqueeze(1)
        dist = torch.sqrt(torch.clamp_min(s, 1e-6))
        a = torch.clamp(torch.exp(-self.dist_mult * dist), 0.0, 1.0)
        a = a * mb.unsqueeze(2) * mb.unsqueeze(1)               # [B*nb, S, S]

        # GHConvDense, degree-normalised homogeneous message.
        nrm = (torch.pow(a.sum(dim=2) + 1e-6, -0.5) * mb).unsqueeze(2)
        f_hom = nrm * torch.bmm(a, nrm * hb)                    # [B*nb, S, w]
        f_hom = torch.gather(f_hom.reshape(B, Np, w), 1,
                             inv.unsqueeze(2).expand(-1, -1, w))  # row order
        g = torch.sigmoid(self.wt(x))
        out = F.elu(g * f_hom + (1.0 - g) * self.wh(x)) * m.unsqueeze(2)
        return out, hsh


class MLPF(nn.Module):
    """MLPF (PFNetDense, HEPscore-2022 configuration) on padded batches."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        w, c, hh = cfg["width"], cfg["n_classes"], cfg["head_hidden"]
        enc_in = cfg["n_types"] + cfg["n_features"] - 1
        self.enc = nn.Sequential(nn.Linear(enc_in, w), nn.GELU(),
                                 nn.Linear(w, w), nn.GELU())
        self.cg_id = nn.ModuleList([CombinedGraphLayer(cfg)
                                    for _ in range(cfg["n_graph_id"])])
        self.cg_reg = nn.ModuleList([CombinedGraphLayer(cfg)
                                     for _ in range(cfg["n_graph_reg"])])
        self.ln = nn.LayerNorm(w, eps=cfg["ln_eps"])

        def hid(n):
            return [hh >> i for i in range(n)]
        reg = hid(cfg["reg_hidden_layers"])
        self.ffn_id = mlp([w] + hid(cfg["id_hidden_layers"]) + [c], nn.ELU)
        self.ffn_ch = mlp([w] + hid(cfg["ch_hidden_layers"]) + [1], nn.ELU)
        self.ffn_eta = mlp([w + c] + reg + [1], nn.ELU)
        self.ffn_phi = mlp([w + c] + reg + [2], nn.ELU)
        self.ffn_e = mlp([2 * w + 2 * c] + reg + [1], nn.ELU)
        self.ffn_pt = mlp([2 * w + 2 * c] + reg + [2], nn.ELU)
        self.reset_parameters()

    def reset_parameters(self):
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                nn.init.xavier_uniform_(mod.weight)
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)
        for cg in list(self.cg_id) + list(self.cg_reg):
            for lin in (cg.theta, cg.wh, cg.wt):
                nn.init.normal_(lin.weight, 0.0, 0.05)
            nn.init.normal_(cg.wt.bias, 0.0, 0.05)
            nn.init.normal_(cg.R, 0.0, 0.05)

    def n_params(self):
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def lsh_k(self, m):
        """Per-event number of LSH columns k_e from the real length N_e."""
        n = m.sum(dim=1).round().long()
        nb = torch.div(n + self.cfg["bin_size"] - 1, self.cfg["bin_size"],
                       rounding_mode="floor")
        return torch.clamp(torch.div(nb, 2, rounding_mode="floor"),
                           1, self.cfg["max_num_bins"] // 2)

    def forward(self, X, m, return_hashes=False):
        """X [B, Np, 12] zero-padded, m [B, Np] (1 real, 0 padding).
        Returns a dict of per-row predictions [B, Np] (logits [B, Np, 6])."""
        cfg = self.cfg
        typ = torch.round(X[..., 0]).long()
        e = torch.cat([F.one_hot(typ, cfg["n_types"]).to(X.dtype),
                       X[..., 1:cfg["n_features"]]], dim=2)
        h0 = self.enc(e)
        k = self.lsh_k(m)
        hashes = []
        z_id = h0
        for layer in self.cg_id:
            dz, hsh = layer(z_id, m, k)
            z_id = z_id + dz
            hashes.append(hsh)
        z_reg = h0
        for layer in self.cg_reg:
            dz, hsh = layer(z_reg, m, k)
            z_reg = z_reg + dz
            hashes.append(hsh)

        u = self.ln(z_id)
        logits = self.ffn_id(u)
        ls = logits.detach()
        u2 = torch.cat([u, ls], dim=2)
        v = torch.cat([u2, z_reg, ls], dim=2)
        phi = self.ffn_phi(u2)
        out = {"logits": logits,
               "charge": self.ffn_ch(u)[..., 0],
               "pt": torch.abs(self.ffn_pt(v)[..., 0]),
               "eta": X[..., 2] + self.ffn_eta(u2)[..., 0],
               "sin_phi": X[..., 3] + phi[..., 0],
               "cos_phi": X[..., 4] + phi[..., 1],
               "energy": torch.abs(X[..., 5] + self.ffn_e(v)[..., 0])}
        if return_hashes:
            out["hashes"] = hashes
        return out


def mlpf_loss(pred, y, m):
    """Tensor [8]: total, then the 7 components, each (sum over real
    elements) / (number of real elements)."""
    cls = torch.round(y[..., 0]).long()
    w = (cls != 0).to(y.dtype) * m
    n_cls = pred["logits"].shape[-1]
    ce = F.cross_entropy(pred["logits"].reshape(-1, n_cls), cls.reshape(-1),
                         reduction="none").reshape(m.shape)
    terms = [
        ce * m,
        (pred["charge"] - y[..., 1]) ** 2 * m,
        w * F.huber_loss(pred["pt"], y[..., 2], reduction="none", delta=1.0),
        w * F.huber_loss(pred["eta"], y[..., 3], reduction="none", delta=0.1),
        w * F.huber_loss(pred["sin_phi"], y[..., 4], reduction="none", delta=0.1),
        w * F.huber_loss(pred["cos_phi"], y[..., 5], reduction="none", delta=0.1),
        w * F.huber_loss(pred["energy"], y[..., 6], reduction="none", delta=1.0),
    ]
    comps = torch.stack([t.sum() for t in terms]) / m.sum()
    return torch.cat([comps.sum().reshape(1), comps])


# =============================================================================
# Data
# =============================================================================
def crc32_file(path):
    crc = 0
    with open(path, "rb") as f:
        while True:
            buf = f.read(1 << 24)
            if not buf:
                return crc & 0xFFFFFFFF
            crc = zlib.crc32(buf, crc)


def load_events(data_dir, n_needed, n_features=12, n_types=3, check_crc=True):
    """The first n_needed training events of an mlpfbench dataset, in the
    dataset's order: list of (X [N, 12], ygen [N, 7]) float32 numpy arrays."""
    import h5py
    man_path = os.path.join(data_dir, "manifest.json")
    if not os.path.isfile(man_path):
        raise BenchError("%s: no such file (not an mlpfbench dataset "
                         "directory?)" % man_path)
    try:
        with open(man_path) as f:
            man = json.load(f)
        if man.get("format") != "mlpfbench-dataset":
            raise ValueError("format is %r, not 'mlpfbench-dataset'"
                             % man.get("format"))
        shards = man["train"]["shards"]
        n_avail = int(man["train"]["events"])
    except (ValueError, KeyError, TypeError) as e:
        raise BenchError("%s: not a valid mlpfbench manifest (%s)"
                         % (man_path, e))
    if n_avail < n_needed:
        raise BenchError("%s: the dataset has %d training events, %d are "
                         "needed ((warmup + steps) * batch size)"
                         % (man_path, n_avail, n_needed))
    events = []
    for sh in shards:
        if len(events) >= n_needed:
            break
        path = os.path.join(data_dir, str(sh.get("file", "")))
        if not os.path.isfile(path):
            raise BenchError("%s: shard listed in %s is missing"
                             % (path, man_path))
        size = os.path.getsize(path)
        if "bytes" in sh and int(sh["bytes"]) != size:
            raise BenchError("%s: damaged shard: %d bytes, the manifest says %d"
                             % (path, size, int(sh["bytes"])))
        if check_crc and "crc32" in sh:
            crc = "%08x" % crc32_file(path)
            if crc != str(sh["crc32"]).lower():
                raise BenchError("%s: damaged shard: CRC-32 %s, the manifest "
                                 "says %s" % (path, crc, sh["crc32"]))
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise BenchError("%s: cannot open as HDF5 (%s)" % (path, e))
        with f:
            for name in ("X", "ygen", "offsets"):
                if name not in f:
                    raise BenchError("%s: no /%s dataset" % (path, name))
            X, Y, O = f["X"], f["ygen"], f["offsets"]
            if X.ndim != 2 or X.shape[1] != n_features:
                raise BenchError("%s: /X has shape %s, (rows, %d) expected"
                                 % (path, X.shape, n_features))
            if Y.ndim != 2 or Y.shape[1] != 7 or Y.shape[0] != X.shape[0]:
                raise BenchError("%s: /ygen has shape %s, (%d, 7) expected"
                                 % (path, Y.shape, X.shape[0]))
            if X.dtype.kind != "f" or Y.dtype.kind != "f" or O.dtype.kind not in "iu":
                raise BenchError("%s: dtypes X %s, ygen %s, offsets %s; "
                                 "float, float, int expected"
                                 % (path, X.dtype, Y.dtype, O.dtype))
            off = np.asarray(O[()], dtype=np.int64).reshape(-1)
            if (off.size < 1 or off[0] != 0 or off[-1] != X.shape[0]
                    or np.any(np.diff(off) < 0)):
                raise BenchError("%s: bad /offsets (must start at 0, not "
                                 "decrease and end at %d rows)"
                                 % (path, X.shape[0]))
            n_ev = off.size - 1
            if "events" in sh and int(sh["events"]) != n_ev:
                raise BenchError("%s: %d events, the manifest says %d"
                                 % (path, n_ev, int(sh["events"])))
            take = min(n_ev, n_needed - len(events))
            if take == 0:
                continue
            hi = int(off[take])
            xs = np.asarray(X[0:hi], dtype=np.float32)
            ys = np.asarray(Y[0:hi], dtype=np.float32)
            if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
                raise BenchError("%s: non-finite values in /X or /ygen" % path)
            t = np.round(xs[:, 0])
            if t.size and (t.min() < 0 or t.max() >= n_types):
                raise BenchError("%s: element type outside [0, %d) in /X "
                                 "column 0" % (path, n_types))
            c = np.round(ys[:, 0])
            if c.size and (c.min() < 0 or c.max() >= 6):
                raise BenchError("%s: target class outside [0, 6) in /ygen "
                                 "column 0" % path)
            for i in range(take):
                a, b = int(off[i]), int(off[i + 1])
                events.append((xs[a:b], ys[a:b]))
    if len(events) < n_needed:
        raise BenchError("%s: only %d training events found in the shards, %d "
                         "needed" % (man_path, len(events), n_needed))
    return events


def collate(events, bin_size, dtype=torch.float32):
    """Zero-pads events to [B, Np, .] with Np a multiple of bin_size.
    Returns X [B, Np, 12], y [B, Np, 7], m [B, Np] (1 real, 0 padding)."""
    B = len(events)
    nmax = max(max(x.shape[0] for x, _ in events), 1)
    npad = bin_size * (-(-nmax // bin_size))
    X = np.zeros((B, npad, events[0][0].shape[1]), dtype=np.float64)
    Y = np.zeros((B, npad, 7), dtype=np.float64)
    M = np.zeros((B, npad), dtype=np.float64)
    for i, (x, y) in enumerate(events):
        n = x.shape[0]
        X[i, :n] = x
        Y[i, :n] = y
        M[i, :n] = 1.0
    return (torch.from_numpy(X).to(dtype), torch.from_numpy(Y).to(dtype),
            torch.from_numpy(M).to(dtype))


# =============================================================================
# Benchmark
# =============================================================================
def current_rss_mib():
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2.0 ** 20
    except (OSError, ValueError, IndexError):
        return peak_rss_mib()


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def default_threads():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def device_of(args):
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device %s: torch %s (%s) sees no GPU "
                         "(torch.cuda.is_available() is False)"
                         % (args.device, torch.__version__, sys.executable))
    return dev


# The tolerance of the first-step check (--verify, the default), relative, on
# each of the 8 losses, by --precision. Measured on this project's machine
# (2-core AMD EPYC, torch 1.13 and 2.15, eager, CPU) against the float64 twin
# on the same events and weights:
#  * fp32: at most 4.6e-5 (hepscore22, 8 data/bench events, MKL's products)
#    and 5.5e-6 (tiny, 8 events). 1e-3 leaves a margin of 20 for other BLAS
#    libraries, GPUs and compiled kernels (fused, reordered sums) and still
#    catches small errors: scaling every weight by 1 + 1e-3 (--perturb
#    0.001) moves a tiny-preset loss by 6.9e-3, a lost head moves its
#    component by 100%.
#  * bf16 (autocast: the products' inputs rounded to 8 bits of mantissa):
#    up to 1.9e-2 (tiny) and 1.2e-2 (hepscore22) with torch 2.15, 9.6e-2
#    with torch 1.13's CPU autocast, mostly in the Huber terms (a prediction
#    near 1 rounded by ~4e-3 against residuals of ~0.1). 0.15 catches gross
#    errors only (NaN, garbage, a lost head, a wrong normalisation by a
#    large factor): 1% on every weight (7e-2 on tiny) passes. A bf16 figure
#    is checked that far and no further.
CHECK_RTOL = {"fp32": 1e-3, "bf16": 0.15}


# =============================================================================
# What this PyTorch is
# =============================================================================
def _short_path(path):
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


def torch_origin():
    """Where this torch comes from, in words."""
    f = os.path.realpath(torch.__file__)
    if f.startswith("/usr/lib/python3/dist-packages/"):
        return "Debian python3-torch"
    how = ""
    try:
        from importlib import metadata
        how = (metadata.distribution("torch").read_text("INSTALLER")
               or "").strip()
    except Exception:      # no metadata: say where it is, not how it came
        pass
    how = how + ", " if how else ""
    if sys.prefix != sys.base_prefix:
        return "%svenv %s" % (how, _short_path(sys.prefix))
    return "%s%s" % (how, _short_path(os.path.dirname(os.path.dirname(f))))


def blas_backend():
    """BLAS_INFO of torch.__config__, with the library that does the
    products: MKL's version (linked into torch) or the BLAS library mapped
    into this process after a product (Debian's torch: BLAS_INFO=generic,
    the system's libblas.so.3 alternative)."""
    cfg = torch.__config__.show()
    m = re.search(r"BLAS_INFO=([\w.+-]+)", cfg)
    info = m.group(1) if m else "unknown"
    if info == "mkl":
        v = re.search(r"Math Kernel Library Version ([\d.]+)", cfg)
        return "MKL %s" % v.group(1) if v else "MKL"
    a = torch.ones(64, 64)
    (a @ a).sum()
    libs = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 6 and re.search(r"blas|blis|mkl",
                                                  os.path.basename(fields[-1]), re.I):
                    if fields[-1] not in libs:
                        libs.append(fields[-1])
    except OSError:
        pass
    for path in libs:
        v = re.search(r"libopenblas\w*-r([\d.]+)\.so", os.path.basename(path))
        if v:
            return "OpenBLAS %s (%s; BLAS_INFO=%s)%s" % (
                v.group(1), os.path.basename(os.path.dirname(path)), info, openblas_core(path))
    if libs:
        return "%s (BLAS_INFO=%s)" % (os.path.basename(libs[0]), info)
    return "BLAS_INFO=%s" % info


def openblas_core(path):
    """", core NAME": the kernels the OpenBLAS mapped into this process runs
    (OPENBLAS_CORETYPE, or its own choice), or "" if it cannot say."""
    try:
        import ctypes
        f = ctypes.CDLL(path).openblas_get_corename
        f.restype = ctypes.c_char_p
        return ", core %s" % f().decode()
    except (OSError, AttributeError, ValueError):
        return ""


def cpu_capability():
    cpu = getattr(torch.backends, "cpu", None)
    if cpu is not None and hasattr(cpu, "get_cpu_capability"):
        return cpu.get_cpu_capability()
    m = re.search(r"CPU capability usage: (\w+)", torch.__config__.show())
    return m.group(1) if m else "unknown"


def has_compile():
    return callable(getattr(torch, "compile", None))


def describe(device="cpu"):
    """What this PyTorch is, as a dict (--describe prints it as JSON)."""
    import h5py
    d = OrderedDict([
        ("torch_version", torch.__version__),
        ("origin", torch_origin()),
        ("python", sys.executable),
        ("python_version", "%d.%d.%d" % sys.version_info[:3]),
        ("blas", blas_backend()),
        ("cpu_capability", cpu_capability()),
        ("compile", has_compile()),
        ("numpy", np.__version__),
        ("h5py", h5py.__version__),
        ("cuda_available", bool(torch.cuda.is_available())),
    ])
    d["peer"] = "PyTorch %s (%s)" % (d["torch_version"], d["origin"])
    if device == "cuda" and torch.cuda.is_available():
        d["gpu"] = torch.cuda.get_device_name(0)
        d["cuda_version"] = torch.version.cuda
        d["bf16_supported"] = bool(torch.cuda.is_bf16_supported())
    return d


def compile_counters():
    """Graphs compiled so far by torch.compile in this process (dynamo's
    graphs and inductor's compilations, which include the backward graphs
    that AOTAutograd compiles when they are first needed), or None where
    this torch has no such counters."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return None
    ind = counters.get("inductor", {})
    return (int(counters.get("stats", {}).get("unique_graphs", 0))
            + sum(int(ind.get(k, 0)) for k in ("fxgraph_cache_miss",
                                                "fxgraph_cache_hit",
                                                "fxgraph_cache_bypass")))


def precision_context(device, precision):
    """A fresh context for one forward pass and loss: torch.autocast to
    bfloat16, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def twin_losses(cfg, params, buffers, events):
    """torch_twin.compute's 8 losses (float64, CPU, no gradient) for the
    given initial weights (spec names, as spec_weights gives them) on the
    events, unpadded."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch_twin as tt
    twin = tt.MLPF(tt.Config(cfg), dtype=torch.float64)
    fx = {"params": OrderedDict((k, v.numpy()) for k, v in params.items()),
          "buffers": OrderedDict((k, v.numpy()) for k, v in buffers.items())}
    extra = tt.load_weights(twin, fx)
    if extra:
        raise BenchError("parameters not in torch_twin: %s" % extra)
    offs = np.cumsum([0] + [x.shape[0] for x, _ in events])
    batch = tt.batch_to_torch({"X": np.concatenate([x for x, _ in events]),
                               "ygen": np.concatenate([y for _, y in events]),
                               "offsets": offs}, torch.float64)
    with torch.no_grad():
        return tt.compute(twin, batch)["losses"].numpy().astype(np.float64)


def compare_losses(mine, ref, rtol):
    """The check's verdict: every one of the 8 losses finite and within rtol
    (relative) of the reference."""
    mine = np.asarray(mine, dtype=np.float64)
    rel = np.abs(mine - ref) / np.maximum(np.abs(ref), 1e-300)
    rel = np.where(np.isfinite(mine), rel, np.inf)
    worst = int(np.argmax(rel))
    return OrderedDict([
        ("passed", bool(np.all(rel <= rtol))),
        ("max_rel", float(rel[worst])),
        ("worst", LOSS_NAMES[worst]),
        ("tolerance", rtol),
        ("losses", [float(v) for v in mine]),
        ("reference", [float(v) for v in ref]),
        ("reference_by", "torch_twin.compute, float64, CPU, the same initial "
                         "weights and events, unpadded"),
    ])


def run_bench(args):
    if args.data is None:
        raise BenchError("--data DIR is required (or use --check)")
    if args.batch_size < 1 or args.steps < 1 or args.warmup < 0:
        raise BenchError("--batch-size and --steps must be >= 1, --warmup >= 0")
    threads = args.threads or default_threads()
    if threads < 1:
        raise BenchError("--threads must be >= 1")
    torch.set_num_threads(threads)
    dev = device_of(args)
    cfg = PRESETS[args.preset]
    B, W, N = args.batch_size, args.warmup, args.steps
    info = describe(dev.type)

    t0 = time.perf_counter()
    events = load_events(args.data, (W + N) * B, cfg["n_features"],
                         cfg["n_types"], check_crc=not args.no_crc)
    batches = [tuple(t.to(dev) for t in
                     collate(events[i * B:(i + 1) * B], cfg["bin_size"]))
               for i in range(W + N)]
    real = [sum(e[0].shape[0] for e in events[i * B:(i + 1) * B])
            for i in range(W + N)]
    first_events = events[:B]          # for the check of the first step
    del events
    torch.manual_seed(args.seed)
    model = MLPF(cfg).to(dev)
    init_params = init_buffers = None
    if args.verify:                    # the initial weights, for the twin
        p, b = spec_weights(model)
        init_params = OrderedDict((k, v.detach().to("cpu", copy=True))
                                  for k, v in p.items())
        init_buffers = OrderedDict((k, v.detach().to("cpu", copy=True))
                                   for k, v in b.items())
    if args.perturb:                   # tests: a model the check must refuse
        with torch.no_grad():
            for prm in model.parameters():
                prm.mul_(1.0 + args.perturb)
    fwd = torch.compile(model, dynamic=True) if args.compile else model
    t_load = time.perf_counter() - t0
    rss_base = current_rss_mib()
    gpu_base = 0
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        gpu_base = torch.cuda.memory_allocated()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    if args.inference:
        model.eval()

        def step(X, Y, M, first=False):
            with torch.no_grad(), precision_context(dev, args.precision):
                pred = fwd(X, M)
                # the loss only where the check needs it (step 0)
                return mlpf_loss(pred, Y, M) if first else pred["logits"]
    else:
        model.train()
        opt = torch.optim.Adam(model.parameters(), **ADAM)
        sched = torch.optim.lr_scheduler.StepLR(
            opt, step_size=LR_DECAY_STEPS, gamma=LR_DECAY_RATE)

        def step(X, Y, M, first=False):
            opt.zero_grad(set_to_none=True)
            with precision_context(dev, args.precision):
                loss = mlpf_loss(fwd(X, M), Y, M)
            loss[0].backward()
            opt.step()
            sched.step()
            return loss.detach()

    warm = []
    first = None
    for i in range(W):
        tw = time.perf_counter()
        out = step(*batches[i], first=(i == 0))
        sync()
        warm.append(time.perf_counter() - tw)
        if i == 0:
            first = out
    n_compiled = compile_counters() if args.compile else None
    sync()
    t1 = time.perf_counter()
    out = None
    for i in range(W, W + N):
        out = step(*batches[i], first=(i == 0))
        if i == 0:
            first = out
    sync()
    seconds = time.perf_counter() - t1
    if n_compiled is not None:
        after = compile_counters()
        n_compiled = None if after is None else after - n_compiled

    peak = peak_rss_mib()
    events_t = N * B
    res = OrderedDict([
        ("mode", "inference" if args.inference else "train"),
        ("preset", args.preset),
        ("batch_size", B),
        ("threads", threads),
        ("steps", N),
        ("events", events_t),
        ("elements", int(sum(real[W:]))),
        ("seconds", seconds),
        ("events_per_s", events_t / seconds if seconds > 0 else float("inf")),
        ("s_per_step", seconds / N),
        ("peak_rss_mib", peak),
        ("peak_rss_mib_per_event", (peak - rss_base) / B),
        ("torch_version", torch.__version__),
        ("padded_elements", int(sum(b[0].shape[0] * b[0].shape[1]
                                    for b in batches[W:]))),
        ("execution", "compiled" if args.compile else "eager"),
        ("precision", args.precision),
        ("peer", info["peer"]),
        ("torch_origin", info["origin"]),
        ("blas", info["blas"]),
        ("cpu_capability", info["cpu_capability"]),
        ("python", info["python"]),
        # for information
        ("warmup", W),
        ("warmup_seconds", warm),
        ("rss_baseline_mib", rss_base),
        ("load_seconds", t_load),
        ("n_params", model.n_params()),
        ("device", str(dev)),
        ("dtype", "float32"),
        ("seed", args.seed),
        ("data", os.path.abspath(args.data)),
    ])
    if args.compile:
        res["compile_mode"] = "torch.compile(model, dynamic=True)"
        res["compile_seconds"] = sum(max(0.0, t - seconds / N) for t in warm)
        res["compiles_in_timed_steps"] = n_compiled
    if dev.type == "cuda":
        gpeak = torch.cuda.max_memory_allocated()
        res["gpu"] = info.get("gpu")
        res["peak_gpu_mib"] = gpeak / 2.0 ** 20
        res["peak_gpu_mib_per_event"] = (gpeak - gpu_base) / 2.0 ** 20 / B
    if not args.inference:
        res["last_loss"] = [float(v) for v in out]
    if args.perturb:
        res["perturb"] = args.perturb

    # The check of the first step (after the timing and the peak memory).
    res["check"] = None
    if args.verify:
        ref = twin_losses(cfg, init_params, init_buffers, first_events)
        rtol = args.verify_rtol or CHECK_RTOL[args.precision]
        res["check"] = compare_losses(first.detach().double().cpu().numpy(),
                                      ref, rtol)
    chk = res["check"]
    print("%s: %s %s B=%d threads=%d: %d steps (+%d warm-up), %d events, "
          "%d elements (%d padded) in %.3f s: %.4g events/s, %.4g s/step, "
          "peak RSS %.0f MiB (%.1f MiB/event over %.0f MiB), torch %s%s"
          % (PROG, res["mode"], args.preset, B, threads, N, W, events_t,
             res["elements"], res["padded_elements"], seconds,
             res["events_per_s"], res["s_per_step"], peak,
             res["peak_rss_mib_per_event"], rss_base, torch.__version__,
             "" if args.inference else ", loss %.5g" % res["last_loss"][0]))
    print("%s: %s, %s, %s on %s; BLAS %s, CPU capability %s%s"
          % (PROG, info["peer"], res["execution"], args.precision, dev,
             info["blas"], info["cpu_capability"],
             "" if not args.compile else
             "; warm-up %s s (compiling ~%.1f s), %s graphs compiled in the "
             "timed steps" % ("/".join("%.1f" % t for t in warm),
                              res["compile_seconds"],
                              "?" if n_compiled is None else n_compiled)))
    if chk is not None:
        print("%s: check %s: first-step losses vs torch_twin (float64): "
              "largest relative difference %.2e (%s), tolerance %.2g"
              % (PROG, "PASS" if chk["passed"] else "FAIL", chk["max_rel"],
                 chk["worst"], chk["tolerance"]))
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(res, f, indent=2)
            f.write("\n")
        os.replace(tmp, args.json)
    return 0 if chk is None or chk["passed"] else 1


# =============================================================================
# --check: same function as torch_twin.compute
# =============================================================================
def spec_weights(model, grads=False):
    """Parameters (or, with grads=True, their gradients) and buffers of
    `model` under torch_twin's (= the parity fixture's) names and layouts:
    dense W as [in, out]."""
    params, buffers = OrderedDict(), OrderedDict()

    def get(p):
        if not grads:
            return p.detach()
        return p.grad.detach() if p.grad is not None else torch.zeros_like(p)

    def chain(prefix, seq):
        lins = [mod for mod in seq if isinstance(mod, nn.Linear)]
        for i, lin in enumerate(lins):
            params["%s.%d.W" % (prefix, i)] = get(lin.weight).t()
            params["%s.%d.b" % (prefix, i)] = get(lin.bias)

    chain("enc", model.enc)
    for stack, layers in (("id", model.cg_id), ("reg", model.cg_reg)):
        for i, cg in enumerate(layers):
            p = "cg_%s%d" % (stack, i)
            chain(p + ".dist", cg.dist)
            params[p + ".theta"] = get(cg.theta.weight).t()
            params[p + ".wh"] = get(cg.wh.weight).t()
            params[p + ".wt"] = get(cg.wt.weight).t()
            params[p + ".bt"] = get(cg.wt.bias)
            buffers[p + ".R"] = cg.R.detach()
    params["ln.gamma"] = get(model.ln.weight)
    params["ln.beta"] = get(model.ln.bias)
    for head in ("ffn_id", "ffn_ch", "ffn_eta", "ffn_phi", "ffn_e", "ffn_pt"):
        chain(head, getattr(model, head))
    return params, buffers


def check_events(args, rng):
    """A few short events of different sizes (tiny preset: bin size 16):
    one bin, exactly one bin, several bins with k = 1, 2 and k = 4 (the
    max_num_bins/2 cap), so that the batch has partly and fully padded bins."""
    sizes = [37, 16, 5, 150, 61]
    if args.data is not None:
        src = load_events(args.data, len(sizes), check_crc=not args.no_crc)
        evs = []
        for (x, y), n in zip(src, sizes):
            # evenly spaced rows: tracks and towers, with and without targets
            idx = np.unique(np.linspace(0, x.shape[0] - 1, n).round().astype(int))
            if idx.size < n:
                idx = np.arange(min(n, x.shape[0]))
            evs.append((x[idx], y[idx]))
        return evs, "samples of the first %d events of %s" % (len(sizes), args.data)
    evs = []
    for n in sizes:
        x = rng.normal(size=(n, 12))
        x[:, 0] = rng.integers(1, 3, size=n)
        y = rng.normal(size=(n, 7))
        y[:, 0] = rng.integers(0, 6, size=n)
        evs.append((x.astype(np.float32), y.astype(np.float32)))
    return evs, "random events"


def run_check(args):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch_twin as tt
    torch.set_num_threads(args.threads or default_threads())
    rng = np.random.default_rng(args.seed)
    events, what = check_events(args, rng)
    cfg = PRESETS["tiny"]
    dt = torch.float64

    # Parameter count of the real configuration.
    n_big = MLPF(PRESETS["hepscore22"]).n_params()
    ok_count = n_big == PRESETS["hepscore22"]["n_params"]
    print("hepscore22 parameter count: %d (spec %d) %s"
          % (n_big, PRESETS["hepscore22"]["n_params"], "OK" if ok_count else "FAIL"))

    torch.manual_seed(args.seed)
    model = MLPF(cfg).to(dt)
    params, buffers = spec_weights(model)
    dev = device_of(args)
    twin = tt.MLPF(tt.Config(cfg), dtype=dt)
    fx = {"params": OrderedDict((k, v.numpy()) for k, v in params.items()),
          "buffers": OrderedDict((k, v.numpy()) for k, v in buffers.items())}
    extra = tt.load_weights(twin, fx)
    if extra:
        print("FAIL: parameters not in the twin: %s" % extra)
        return 1
    if twin.n_trainable() != model.n_params():
        print("FAIL: %d parameters here, %d in the twin"
              % (model.n_params(), twin.n_trainable()))
        return 1

    # Padded, batched model (compiled with --compile), on --device.
    X, Y, M = (t.to(dev) for t in collate(events, cfg["bin_size"], dt))
    model.to(dev)
    fwd = torch.compile(model, dynamic=True) if args.compile else model
    t0 = time.perf_counter()
    pred = fwd(X, M, return_hashes=True)
    loss = mlpf_loss(pred, Y, M)
    model.zero_grad()
    loss[0].backward()
    t_fwd_bwd = time.perf_counter() - t0
    g_mine = OrderedDict((k, v.cpu()) for k, v in
                         spec_weights(model, grads=True)[0].items())
    loss = loss.detach().cpu()
    pred["hashes"] = [h.cpu() for h in pred["hashes"]]
    model.to("cpu")

    # Twin on the same events, unpadded (ragged rows + offsets).
    offs = np.cumsum([0] + [x.shape[0] for x, _ in events])
    batch = tt.batch_to_torch({"X": np.concatenate([x for x, _ in events]),
                               "ygen": np.concatenate([y for _, y in events]),
                               "offsets": offs}, dt)
    out = tt.compute(twin, batch)
    g_twin = tt.gradients(twin, out["losses"])
    ref = out["losses"].detach()

    print("check: tiny preset, float64, %d events (%s), sizes %s, padded to "
          "[%d, %d] (bin size %d)" % (len(events), what,
                                      [x.shape[0] for x, _ in events],
                                      X.shape[0], X.shape[1], cfg["bin_size"]))
    print("check: %s, %s, on %s; forward and backward %.1f s%s"
          % (describe()["peer"], "torch.compile(model, dynamic=True)"
             if args.compile else "eager", dev, t_fwd_bwd,
             " (compiling included)" if args.compile else ""))
    print("%-16s %22s %22s %10s" % ("loss", "padded batch", "torch_twin", "rel.diff"))
    worst = ("", 0.0)
    for i, nm in enumerate(LOSS_NAMES):
        a, b = float(loss[i]), float(ref[i])
        rel = abs(a - b) / max(abs(b), 1e-300)
        print("%-16s %22.15e %22.15e %10.2e" % (nm, a, b, rel))
        if not rel <= worst[1]:
            worst = ("loss/" + nm, rel)
    worst_loss = worst

    # Gradients (relative L2 per tensor; absolute where the reference is
    # analytically zero: the last bias of ffn_dist, see torch_twin.py 19).
    tot = math.sqrt(sum(float(g.norm()) ** 2 for g in g_twin.values()))
    worst_g = ("", 0.0)
    for nm, gt in g_twin.items():
        gm = g_mine[nm]
        if tuple(gm.shape) != tuple(gt.shape):
            print("FAIL: gradient %s has shape %s, twin %s"
                  % (nm, tuple(gm.shape), tuple(gt.shape)))
            return 1
        diff = float((gm - gt).norm())
        nref = float(gt.norm())
        rel = diff if nref <= 1e-12 * tot else diff / nref
        if not rel <= worst_g[1]:
            worst_g = ("grad/" + nm, rel)
    print("gradients: %d tensors, largest relative difference %.2e (%s)"
          % (len(g_twin), worst_g[1], worst_g[0]))

    # LSH buckets of every real element, every graph layer.
    names = tt.Config(cfg).graph_layer_names()
    n_diff = 0
    for nm, h in zip(names, pred["hashes"]):
        mine = torch.cat([h[i, :x.shape[0]] for i, (x, _) in enumerate(events)])
        n_diff += int((mine != out["hashes"][nm]).sum())
    print("LSH buckets: %d of %d differ" % (n_diff, len(names) * int(offs[-1])))

    # For information: the float32 padded model against the float64 twin.
    m32 = MLPF(cfg)
    m32.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    X32, Y32, M32 = collate(events, cfg["bin_size"], torch.float32)
    with torch.no_grad():
        l32 = mlpf_loss(m32(X32, M32), Y32, M32).double()
    print("(information: float32 padded model vs float64 twin, largest "
          "relative loss difference %.2e)"
          % float(((l32 - ref).abs() / ref.abs().clamp_min(1e-300)).max()))

    worst_all = max([worst_loss, worst_g], key=lambda t: t[1])
    ok = ok_count and n_diff == 0 and worst_all[1] <= args.rtol
    print("CHECK %s: largest relative difference %.2e (%s), tolerance %.0e"
          % ("PASS" if ok else "FAIL", worst_all[1], worst_all[0], args.rtol))
    return 0 if ok else 1


# =============================================================================
def main(argv=None):
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="PyTorch benchmark of the mlpfbench MLPF model "
                    "(padded batches, autograd, torch.optim.Adam).")
    ap.add_argument("--data", metavar="DIR", help="mlpfbench dataset directory")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="hepscore22")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (default: all available cores)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--inference", action="store_true",
                    help="forward only, under torch.no_grad()")
    ap.add_argument("--json", metavar="OUT", help="write the result as JSON")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--device", default="cpu", help="torch device (default cpu)")
    ap.add_argument("--no-crc", action="store_true",
                    help="skip the CRC-32 check of the shards read")
    ap.add_argument("--check", action="store_true",
                    help="compare with torch_twin.py (tiny preset, float64)")
    ap.add_argument("--rtol", type=float, default=1e-5,
                    help="--check tolerance (default 1e-5)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile(model, dynamic=True) (PyTorch >= 2.0)")
    ap.add_argument("--precision", choices=sorted(CHECK_RTOL), default="fp32",
                    help="fp32 (default) or bf16 autocast")
    ap.add_argument("--no-verify", dest="verify", action="store_false",
                    help="skip the first step's check against torch_twin")
    ap.add_argument("--verify-rtol", type=float, default=0.0,
                    help="tolerance of that check (default: by precision)")
    ap.add_argument("--perturb", type=float, default=0.0,
                    help=argparse.SUPPRESS)  # tests: scale the weights by 1+X
    ap.add_argument("--describe", action="store_true",
                    help="print what this PyTorch is, as JSON")
    args = ap.parse_args(argv)
    if args.compile and not has_compile():
        print("%s: error: --compile needs torch.compile (PyTorch >= 2.0); "
              "%s has torch %s" % (PROG, sys.executable, torch.__version__),
              file=sys.stderr)
        return 2
    try:
        if args.describe:
            print(json.dumps(describe(device_of(args).type), indent=2))
            return 0
        if args.check and args.precision != "fp32":
            raise BenchError("--check runs in float64; --precision does not "
                             "apply to it")
        return run_check(args) if args.check else run_bench(args)
    except BenchError as e:
        print("%s: error: %s" % (PROG, e), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
