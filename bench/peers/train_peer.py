#!/usr/bin/env python3
"""PyTorch peer for the Rust training-throughput benchmark (FNO / PNO_D, 1D and 2D).

One configuration per process; prints ONE JSON line on stdout. See bench/peers/README.md.

  --impl neuralop  FNO built with neuralop.models.FNO (default for --model fno)
  --impl torch     the same FNO in plain PyTorch (same parameter names/layout as neuralop, so
                   neuralop weights load 1:1; --check verifies equality of the forward pass)
  --model pno_d    always plain PyTorch (neuralop has no Fourier-coefficient dropout, and its
                   ChannelMLP dropout sits after the activation and after the last layer too)

Architecture (channels-first [B, C, *spatial]):
  grid embedding (x_i = i/N per dim, neuralop GridEmbeddingND with boundaries [0, 1])
  lifting     Conv1x1(in+dim -> L) [-> Dropout] -> GELU -> Conv1x1(L -> hidden)
  n_layers x  x = SpectralConv(x) + Conv1x1_nobias(x); GELU after all but the last block
  projection  Conv1x1(hidden -> P) [-> Dropout] -> GELU -> Conv1x1(P -> out)
SpectralConv: rfftn(norm="forward"), keep n_modes[d] frequencies -m//2 .. m - m//2 - 1 along the
non-last dims and n_modes[-1]//2 + 1 along the last (rfft) dim, complex weight [in, out, *modes],
(PNO_D: Bernoulli keep-mask [B, out, *modes] / (1-p) on the mixed coefficients), irfftn, + bias [out].
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------------------------------------
# plain PyTorch implementation (names mirror neuralop: lifting.fcs.{0,1}, fno_blocks.convs.i,
# fno_blocks.fno_skips.i.conv, projection.fcs.{0,1})
# ----------------------------------------------------------------------------------------------

def grid_nd(spatial, device, dtype):
    axes = [torch.linspace(0.0, 1.0, n + 1, device=device, dtype=dtype)[:-1] for n in spatial]
    return torch.meshgrid(*axes, indexing="ij")  # x_i = i/N


class GridEmbedding(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self._cache = None

    def forward(self, x):
        spatial = tuple(x.shape[2:])
        if self._cache is None or self._cache[0] != spatial or self._cache[1].dtype != x.dtype:
            g = torch.stack(grid_nd(spatial, x.device, x.dtype)).unsqueeze(0)  # [1, dim, *spatial]
            self._cache = (spatial, g)
        g = self._cache[1]
        return torch.cat([x, g.expand(x.shape[0], *g.shape[1:])], dim=1)


POINTWISE = "conv"  # "conv": nn.Conv1d(k=1) like neuralop; "bmm": same weights via (bad)bmm


def pointwise(conv, x):
    """1x1 conv on [B, C, N] with a Conv1d's parameters; --pointwise bmm uses a batched GEMM
    (mkldnn's NCW 1x1 conv is 2-10x slower than GEMM on CPU for these shapes)."""
    if POINTWISE == "conv":
        return conv(x)
    b = x.shape[0]
    w = conv.weight[:, :, 0].unsqueeze(0).expand(b, -1, -1)
    if conv.bias is None:
        return torch.bmm(w, x)
    return torch.baddbmm(conv.bias.view(1, -1, 1).expand(b, -1, x.shape[2]), w, x)


class ChannelMLP2(nn.Module):
    """Conv1x1 -> [Dropout] -> GELU -> Conv1x1 over flattened spatial dims."""

    def __init__(self, cin, hidden, cout, dropout=0.0):
        super().__init__()
        self.fcs = nn.ModuleList([nn.Conv1d(cin, hidden, 1), nn.Conv1d(hidden, cout, 1)])
        self.drop = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x):
        size = x.shape
        x = x.reshape(size[0], size[1], -1)
        x = pointwise(self.fcs[0], x)
        if self.drop is not None:
            x = self.drop(x)
        x = F.gelu(x)
        x = pointwise(self.fcs[1], x)
        return x.reshape(size[0], -1, *size[2:])


class SkipLinear(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv1d(c, c, 1, bias=False)

    def forward(self, x):
        size = x.shape
        return pointwise(self.conv, x.reshape(size[0], size[1], -1)).reshape(size[0], -1, *size[2:])


class SpectralConvT(nn.Module):
    def __init__(self, cin, cout, n_modes, coef_dropout=0.0):
        super().__init__()
        self.order = len(n_modes)
        self.modes = list(n_modes)
        self.modes[-1] = n_modes[-1] // 2 + 1  # rfft half spectrum
        std = (2.0 / (cin + cout)) ** 0.5  # neuralop init_std="auto"
        self.weight = nn.Parameter(std * torch.randn(cin, cout, *self.modes, dtype=torch.cfloat))
        self.bias = nn.Parameter(std * torch.randn(cout, *([1] * self.order)))
        self.p = coef_dropout
        self.cout = cout

    def forward(self, x):
        b = x.shape[0]
        sizes = list(x.shape[2:])
        dims = list(range(-self.order, 0))
        X = torch.fft.rfftn(x, dim=dims, norm="forward")
        fft_size = sizes[:-1] + [sizes[-1] // 2 + 1]
        for d in range(self.order):
            assert self.modes[d] <= fft_size[d], f"n_modes too large for resolution {sizes}"
        m_last = self.modes[-1]
        if self.order == 1:
            Y = torch.einsum("bix,iox->box", X[..., :m_last], self.weight)
        elif self.order == 2:
            # kept rows in neuralop's (fftshifted) weight order: -m//2 .. m - m//2 - 1
            n, m = fft_size[0], self.modes[0]
            neg, pos = m // 2, m - m // 2
            Xk = torch.cat([X[:, :, n - neg:, :m_last], X[:, :, :pos, :m_last]], dim=2)
            Y = torch.einsum("bixy,ioxy->boxy", Xk, self.weight)
        else:
            raise NotImplementedError("1D and 2D only")
        if self.p > 0 and self.training:
            keep = torch.empty(Y.shape, dtype=torch.float32, device=Y.device).bernoulli_(1 - self.p)
            Y = Y * (keep / (1 - self.p))
        if self.order == 2:  # back to FFT order, zero-fill the dropped rows
            Y = torch.cat([Y[:, :, neg:], Y.new_zeros(b, self.cout, n - m, m_last), Y[:, :, :neg]], dim=2)
        out = F.pad(Y, (0, fft_size[-1] - m_last))  # zero-fill the dropped rfft columns
        y = torch.fft.irfftn(out, s=sizes, dim=dims, norm="forward")
        return y + self.bias


class FNOBlocksT(nn.Module):
    def __init__(self, c, n_modes, n_layers, coef_dropout=0.0):
        super().__init__()
        self.n_layers = n_layers
        self.convs = nn.ModuleList([SpectralConvT(c, c, n_modes, coef_dropout) for _ in range(n_layers)])
        self.fno_skips = nn.ModuleList([SkipLinear(c) for _ in range(n_layers)])

    def forward(self, x, i):
        x = self.convs[i](x) + self.fno_skips[i](x)
        if i < self.n_layers - 1:
            x = F.gelu(x)
        return x


class FNOTorch(nn.Module):
    """FNO (dropout=0) or PNO_D (dropout>0: MLP dropout + Fourier-coefficient dropout)."""

    def __init__(self, n_modes, in_channels, out_channels, hidden, n_layers, lifting, projection,
                 grid=True, dropout=0.0):
        super().__init__()
        dim = len(n_modes)
        self.n_layers = n_layers
        self.positional_embedding = GridEmbedding(dim) if grid else None
        cin = in_channels + (dim if grid else 0)
        self.lifting = ChannelMLP2(cin, lifting, hidden, dropout)
        self.fno_blocks = FNOBlocksT(hidden, n_modes, n_layers, dropout)
        self.projection = ChannelMLP2(hidden, projection, out_channels, dropout)

    def forward(self, x):
        if self.positional_embedding is not None:
            x = self.positional_embedding(x)
        x = self.lifting(x)
        for i in range(self.n_layers):
            x = self.fno_blocks(x, i)
        return self.projection(x)


# ----------------------------------------------------------------------------------------------
# neuralop implementation
# ----------------------------------------------------------------------------------------------

def build_neuralop_fno(a, n_modes):
    from neuralop.models import FNO

    kw = dict(
        n_modes=tuple(n_modes),
        in_channels=a.in_channels,
        out_channels=a.out_channels,
        hidden_channels=a.hidden,
        n_layers=a.layers,
        lifting_channel_ratio=a.lifting / a.hidden,
        projection_channel_ratio=a.projection / a.hidden,
        positional_embedding=None if a.no_grid else "grid",
        non_linearity=F.gelu,
        norm=None,
        complex_data=False,
        use_channel_mlp=False,
        fno_skip="linear",
        domain_padding=None,
        resolution_scaling_factor=None,
        fno_block_precision="full",
        stabilizer=None,
        factorization=None,
        separable=False,
        preactivation=False,
    )
    model = FNO(**kw)
    if not getattr(a, "neuralop_stock", False):
        patch_double_gelu(model.fno_blocks)
    assert model.lifting_channels == a.lifting and model.projection_channels == a.projection, \
        "lifting/projection not an exact multiple of hidden"
    return model, kw


def patch_double_gelu(blocks):
    """neuraloperator 2.0.0 FNOBlocks.forward_with_postactivation applies the non-linearity TWICE
    per non-final block when use_channel_mlp=False (gelu(gelu(conv(x) + skip(x))); upstream issue
    neuraloperator#728, fix PR #729). Replace the block forward by the intended single-GELU one,
    still using neuralop's own SpectralConv and skip modules. Only for norm=None, no channel MLP,
    no stabilizer, post-activation (what build_neuralop_fno builds)."""
    import types

    assert blocks.norm is None and not blocks.use_channel_mlp and not blocks.preactivation

    def forward(self, x, index=0, output_shape=None):
        x_skip = self.convs[index].transform(self.fno_skips[index](x), output_shape=output_shape)
        x = self.convs[index](x, output_shape=output_shape) + x_skip
        if index < self.n_layers - 1:
            x = self.non_linearity(x)
        return x

    blocks.forward = types.MethodType(forward, blocks)


def count_params(model):  # neuralop.utils.count_model_params: complex counts as 2
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())


def load_neuralop_into_torch(nmodel, tmodel):
    sd = {}
    for k, v in nmodel.state_dict().items():
        if k == "_metadata":  # neuralop BaseModel stores its constructor args here
            continue
        k2 = k.replace(".weight.tensor", ".weight")  # tltorch DenseTensor -> plain Parameter
        if k2.startswith("fno_blocks.convs.") and k2.endswith(".weight") and v.dim() > 3:
            v = v.reshape(tmodel.state_dict()[k2].shape)
        sd[k2] = v
    missing, unexpected = tmodel.load_state_dict(sd, strict=False)
    assert not missing and not unexpected, (missing, unexpected)


# ----------------------------------------------------------------------------------------------
# losses
# ----------------------------------------------------------------------------------------------

def rel_l2(pred, y):
    b = pred.shape[0]
    d = (pred - y).reshape(b, -1).norm(dim=1)
    n = y.reshape(b, -1).norm(dim=1)
    return (d / n).mean()


def energy_score(samples, y):
    """samples [M, B, C, *s], y [B, C, *s]; fair energy score with discretised L2 norm, batch mean."""
    m, b = samples.shape[:2]
    spatial = y.shape[2:]
    h = math.prod(1.0 / n for n in spatial)  # h1*h2 (2D) or h (1D), h = 1/N
    scale = math.sqrt(h)
    s = samples.reshape(m, b, -1)
    yy = y.reshape(1, b, -1)
    term1 = (s - yy).norm(dim=2).mean(dim=0) * scale  # [B]
    pair = 0.0
    for i in range(m):
        for j in range(m):
            if i != j:
                pair = pair + (s[i] - s[j]).norm(dim=1)
    term2 = pair * scale / (2 * m * (m - 1))
    return (term1 - term2).mean()


# ----------------------------------------------------------------------------------------------

def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["fno", "pno_d"], default="fno")
    p.add_argument("--impl", choices=["neuralop", "torch"], default=None,
                   help="default: neuralop for fno, torch for pno_d (pno_d is torch only)")
    p.add_argument("--dim", type=int, choices=[1, 2], default=2)
    p.add_argument("--res", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--modes", type=int, nargs="+", default=[12, 12])
    p.add_argument("--lifting", type=int, default=256)
    p.add_argument("--projection", type=int, default=256)
    p.add_argument("--in-channels", type=int, default=1)
    p.add_argument("--out-channels", type=int, default=1)
    p.add_argument("--no-grid", action="store_true", help="disable the grid positional embedding")
    p.add_argument("--dropout", type=float, default=0.2, help="pno_d dropout p")
    p.add_argument("--es-samples", type=int, default=3, help="pno_d energy-score samples M")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--infer-samples", type=int, default=None,
                   help="K stochastic samples per input at inference (pno_d; default = --es-samples)")
    p.add_argument("--infer-reps", type=int, default=5, help="timed inference repetitions")
    p.add_argument("--infer-mode", choices=["auto", "loop", "batch"], default="auto",
                   help="pno_d inference: loop = K passes of batch B, batch = 1 pass of batch B*K, "
                        "auto = time both and report the faster")
    p.add_argument("--neuralop-stock", action="store_true",
                   help="do NOT patch neuralop 2.0.0's double GELU per block (see patch_double_gelu)")
    p.add_argument("--pointwise", choices=["conv", "bmm"], default="conv",
                   help="torch impl only: 1x1 convs as nn.Conv1d (as neuralop) or as batched GEMM")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu",
                   help="cpu or cuda[:N] (bench/gpu.sh); timings synchronise the GPU")
    p.add_argument("--check", action="store_true",
                   help="verify the torch FNO equals neuralop's (same weights), print to stderr")
    a = p.parse_args()
    if a.impl is None:
        a.impl = "neuralop" if a.model == "fno" else "torch"
    if a.model == "pno_d" and a.impl == "neuralop":
        p.error("pno_d cannot be expressed with neuralop.models.FNO; use --impl torch")
    if len(a.modes) == 1 and a.dim == 2:
        a.modes = a.modes * 2
    if len(a.modes) != a.dim:
        p.error("--modes needs one int per dimension")
    if a.pointwise != "conv" and a.impl != "torch":
        p.error("--pointwise bmm needs --impl torch")
    if a.infer_samples is None:
        a.infer_samples = a.es_samples if a.model == "pno_d" else 1
    return a


def check_equivalence(a, n_modes, dtype=torch.float32):
    nmodel, _ = build_neuralop_fno(a, n_modes)
    tmodel = FNOTorch(n_modes, a.in_channels, a.out_channels, a.hidden, a.layers, a.lifting,
                      a.projection, grid=not a.no_grid)
    load_neuralop_into_torch(nmodel, tmodel)
    x = torch.randn(2, a.in_channels, *([a.res] * a.dim))
    with torch.no_grad():
        yn, yt = nmodel(x), tmodel(x)
    err = (yn - yt).abs().max().item() / yn.abs().max().item()
    # PNO_D with p=0 is the same function
    pmodel = FNOTorch(n_modes, a.in_channels, a.out_channels, a.hidden, a.layers, a.lifting,
                      a.projection, grid=not a.no_grid, dropout=0.0)
    load_neuralop_into_torch(nmodel, pmodel)
    with torch.no_grad():
        yp = pmodel.train()(x)
    err_p = (yn - yp).abs().max().item() / yn.abs().max().item()
    print(f"check: params neuralop={count_params(nmodel)} torch={count_params(tmodel)} "
          f"rel max|diff| torch-vs-neuralop={err:.2e} pno_d(p=0)-vs-neuralop={err_p:.2e}", file=sys.stderr)
    assert count_params(nmodel) == count_params(tmodel)
    if not a.neuralop_stock:
        assert err < 1e-5 and err_p < 1e-5, "torch FNO differs from neuralop FNO"



def rss_now_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def main():
    a = parse()
    global POINTWISE
    POINTWISE = a.pointwise
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    n_modes = tuple(a.modes)
    try:
        import neuralop
        nl_ver = getattr(neuralop, "__version__", None)
        if nl_ver is None:
            from importlib.metadata import version
            nl_ver = version("neuraloperator")
    except Exception:
        nl_ver = None
    rss_import = rss_now_mb()  # torch + neuralop runtime before any model/data

    if a.check:
        check_equivalence(a, n_modes)
        torch.manual_seed(a.seed)

    if a.model == "fno" and a.impl == "neuralop":
        model, _ = build_neuralop_fno(a, n_modes)
    else:
        model = FNOTorch(n_modes, a.in_channels, a.out_channels, a.hidden, a.layers, a.lifting,
                         a.projection, grid=not a.no_grid,
                         dropout=a.dropout if a.model == "pno_d" else 0.0)
    params = count_params(model)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    model = model.to(dev)

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    g = torch.Generator().manual_seed(a.seed + 1)
    shape = [a.res] * a.dim
    x = torch.randn(a.batch, a.in_channels, *shape, generator=g).to(dev)
    y = torch.randn(a.batch, a.out_channels, *shape, generator=g).to(dev)

    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    M = a.es_samples

    def train_step():
        opt.zero_grad(set_to_none=True)
        if a.model == "fno":
            loss = rel_l2(model(x), y)
        else:
            # M stochastic passes as ONE forward on the batch repeated M times (independent
            # dropout masks per row), reshaped to [M, B, ...]
            xr = x.unsqueeze(0).expand(M, *x.shape).reshape(M * a.batch, *x.shape[1:])
            out = model(xr).reshape(M, a.batch, a.out_channels, *shape)
            loss = energy_score(out, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    load0 = os.getloadavg()[0]
    model.train()
    t0 = time.perf_counter()
    train_step()
    sync()
    first_step_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(max(a.warmup - 1, 0)):
        train_step()
    times = []
    loss = None
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = train_step()
        sync()
        times.append(time.perf_counter() - t0)
    step_ms = statistics.median(times) * 1e3

    # inference
    K = a.infer_samples
    infer_mode = "eval"

    def timed(fn, reps):
        fn()  # warm-up
        sync()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            sync()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts) * 1e3

    with torch.no_grad():
        if a.model == "fno":
            model.eval()
            infer_ms = timed(lambda: model(x), a.infer_reps)
            K = 1
        else:
            model.train()  # dropout on: MC sampling
            xk = x.unsqueeze(0).expand(K, *x.shape).reshape(K * a.batch, *x.shape[1:])
            cands = {}
            if a.infer_mode in ("auto", "loop"):
                cands["loop"] = timed(lambda: [model(x) for _ in range(K)], a.infer_reps)
            if a.infer_mode in ("auto", "batch"):
                cands["batch"] = timed(lambda: model(xk), a.infer_reps)
            infer_mode = min(cands, key=cands.get)
            infer_ms = cands[infer_mode]
            if len(cands) > 1:
                infer_mode += " (loop %.1f ms, batch %.1f ms)" % (cands["loop"], cands["batch"])

    rec = {
        "peer": "pytorch",
        "impl": a.impl,
        "torch": torch.__version__,
        "neuralop": nl_ver,
        "model": a.model,
        "dim": a.dim,
        "res": a.res,
        "batch": a.batch,
        "params": params,
        "threads": a.threads,
        "train_step_ms_median": round(step_ms, 3),
        "train_samples_per_s": round(a.batch / (step_ms / 1e3), 3),
        "infer_ms_median": round(infer_ms, 3),
        "infer_samples": K,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "device": a.device,
        "first_step_ms": round(first_step_ms, 3),
        "peak_gpu_allocated_mb": round(torch.cuda.max_memory_allocated(dev) / 2**20, 1) if cuda else None,
        # extras
        "hidden": a.hidden, "layers": a.layers, "modes": list(n_modes), "lifting": a.lifting,
        "projection": a.projection, "dropout": a.dropout if a.model == "pno_d" else 0.0,
        "es_samples": M if a.model == "pno_d" else None, "steps": a.steps, "warmup": a.warmup,
        "infer_mode": infer_mode,
        "pointwise": a.pointwise if a.impl == "torch" else "conv",
        "neuralop_gelu_patch": (not a.neuralop_stock) if a.impl == "neuralop" else None, "last_loss": round(loss, 6) if loss is not None else None,
        "rss_after_import_mb": round(rss_import, 1),
        "loadavg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
