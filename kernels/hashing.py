"""Token-row hashing kernel: the same 64-bit keys as ``graphgpo.hashing.hash_token_rows``, bit for bit.

One program hashes ``BLOCK_R`` rows, walking the columns in tiles of ``BLOCK_C``. Every lane works in
uint64, where Triton's multiply wraps mod 2**64 and ``>>`` is logical, exactly as the definition asks
(graphgpo/hashing.py). The per-row sum is order-free (addition mod 2**64), so tiling cannot change
the bits. One launch per call; the tokens are read once.
"""

from __future__ import annotations

import torch

from graphgpo.hashing import check_token_rows

from . import HAS_TRITON, check_device, launch

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _mix64(z):
        # splitmix64 finaliser on uint64 lanes
        z ^= z >> 30
        z = z * 0xBF58476D1CE4E5B9
        z ^= z >> 27
        z = z * 0x94D049BB133111EB
        z ^= z >> 31
        return z

    @triton.jit
    def _hash_rows_kernel(tok_ptr, len_ptr, mask_ptr, out_ptr, rows, width,
                          stride_r, stride_c, mstride_r, mstride_c,
                          MODE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        # MODE 0: every column counts; 1: lengths; 2: boolean mask (as uint8).
        pid = tl.program_id(0)
        r = pid * BLOCK_R + tl.arange(0, BLOCK_R)
        rmask = r < rows
        r64 = r.to(tl.int64)
        if MODE == 1:
            length = tl.load(len_ptr + r, mask=rmask, other=0).to(tl.int64)
        acc = tl.zeros([BLOCK_R], dtype=tl.uint64)
        count = tl.zeros([BLOCK_R], dtype=tl.int64)
        for c0 in range(0, width, BLOCK_C):
            c = c0 + tl.arange(0, BLOCK_C)
            c64 = c.to(tl.int64)
            inside = rmask[:, None] & (c < width)[None, :]
            tok = tl.load(tok_ptr + r64[:, None] * stride_r + c64[None, :] * stride_c, mask=inside, other=0)
            t = tok.to(tl.int64).to(tl.uint64, bitcast=True)
            pos = _mix64(c64.to(tl.uint64, bitcast=True) + 0x632BE59BD9B4E019)
            term = _mix64(t * 0x9E3779B97F4A7C15 + pos[None, :])
            if MODE == 1:
                keep = inside & (c64[None, :] < length[:, None])
            elif MODE == 2:
                m = tl.load(mask_ptr + r64[:, None] * mstride_r + c64[None, :] * mstride_c, mask=inside, other=0)
                keep = inside & (m != 0)
                count += tl.sum(keep.to(tl.int64), axis=1)
            else:
                keep = inside
            acc += tl.sum(tl.where(keep, term, tl.zeros_like(term)), axis=1)
        if MODE == 1:
            n = length
        elif MODE == 2:
            n = count
        else:
            n = tl.zeros([BLOCK_R], dtype=tl.int64) + width
        key = _mix64(acc ^ _mix64(n.to(tl.uint64, bitcast=True) + 0xD6E8FEB86659FD93))
        tl.store(out_ptr + r, key.to(tl.int64, bitcast=True), mask=rmask)


def hash_token_rows(tokens: torch.Tensor, lengths: torch.Tensor | None = None,
                    mask: torch.Tensor | None = None, *, block_rows: int = 64,
                    block_cols: int = 32) -> torch.Tensor:
    """int64 keys of padded token rows (see ``graphgpo.hashing.hash_token_rows``), one Triton launch.

    tokens: [rows, width] integer tensor on the device; ``lengths`` ([rows]) or a boolean ``mask``
    ([rows, width]), not both; with neither every column counts.
    """
    lengths, mask = check_token_rows(tokens, lengths, mask)
    check_device(tokens)
    rows, width = tokens.shape
    out = torch.empty(rows, dtype=torch.int64, device=tokens.device)
    if rows == 0:
        return out
    mode = 0
    len_arg, mask_arg = out, out.view(torch.uint8)  # unused pointers still need a tensor of the declared type
    mstride = (0, 0)
    if lengths is not None:
        mode, len_arg = 1, lengths.contiguous()
    elif mask is not None:
        mask_arg = mask.view(torch.uint8)
        mode, mstride = 2, (mask_arg.stride(0), mask_arg.stride(1))
    block_cols = min(block_cols, triton.next_power_of_2(max(width, 1)))
    grid = (triton.cdiv(rows, block_rows),)
    launch(_hash_rows_kernel, grid, tokens, len_arg, mask_arg, out, rows, width,
                            tokens.stride(0), tokens.stride(1), mstride[0], mstride[1],
                            MODE=mode, BLOCK_R=block_rows, BLOCK_C=block_cols)
    return out
