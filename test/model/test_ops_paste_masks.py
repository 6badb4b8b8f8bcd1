from __future__ import annotations

import numpy as np
import pytest
import torch

from panoptic_perception.errors import InputError
from panoptic_perception.model.paste_masks import paste_masks


def paste_reference(mask: np.ndarray, box, height: int, width: int) -> np.ndarray:
    """Each image pixel centre mapped into the mask's own pixel grid, bilinear, zero outside."""
    size_y, size_x = mask.shape
    x0, y0, x1, y1 = box
    out = np.zeros((height, width))

    def read(r: int, c: int) -> float:
        return mask[r, c] if 0 <= r < size_y and 0 <= c < size_x else 0.0

    for y in range(height):
        v = (y + 0.5 - y0) / (y1 - y0) * size_y - 0.5
        for x in range(width):
            u = (x + 0.5 - x0) / (x1 - x0) * size_x - 0.5
            c0, r0 = int(np.floor(u)), int(np.floor(v))
            fu, fv = u - c0, v - r0
            out[y, x] = ((1 - fv) * ((1 - fu) * read(r0, c0) + fu * read(r0, c0 + 1))
                         + fv * ((1 - fu) * read(r0 + 1, c0) + fu * read(r0 + 1, c0 + 1)))
    return out


def test_paste_matches_pixel_centre_reference():
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(4, 6, 6, generator=gen)
    boxes = torch.tensor([[2.0, 3.0, 12.5, 9.0], [-4.0, -2.0, 6.0, 5.0], [10.0, 1.0, 25.0, 14.0],
                          [5.3, 5.1, 7.9, 6.2]])
    pasted = paste_masks(masks, boxes, 15, 20)
    assert pasted.shape == (4, 15, 20)
    for d in range(4):
        want = paste_reference(masks[d].double().numpy(), boxes[d].tolist(), 15, 20)
        np.testing.assert_allclose(pasted[d].numpy(), want, rtol=1e-4, atol=1e-5)


def test_full_mask_covers_its_box_only():
    pasted = paste_masks(torch.ones(1, 28, 28), torch.tensor([[4.0, 2.0, 14.0, 8.0]]), 12, 20)[0]
    assert torch.all(pasted[3:7, 5:13] > 0.99)
    assert pasted[:, :3].abs().max() == 0 and pasted[:, 15:].abs().max() == 0
    assert pasted[:1].abs().max() == 0 and pasted[9:].abs().max() == 0
    binary = pasted > 0.5
    assert binary.sum() == 10 * 6  # the box's own pixels, as detectron2's binarised paste gives


def test_degenerate_boxes_paste_zeros():
    boxes = torch.tensor([[3.0, 3.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0]])
    pasted = paste_masks(torch.ones(2, 4, 4), boxes, 8, 8)
    assert torch.isfinite(pasted).all()
    assert pasted.abs().max() == 0


def test_paste_rejects_mismatched_inputs():
    with pytest.raises(InputError, match="paste_masks"):
        paste_masks(torch.ones(2, 4, 4), torch.zeros(3, 4), 8, 8)


def test_paste_export_equals_eager():
    class Paste(torch.nn.Module):
        def forward(self, masks, boxes):
            return paste_masks(masks, boxes, 24, 32)

    gen = torch.Generator().manual_seed(1)
    args = (torch.rand(3, 7, 7, generator=gen), torch.tensor([[1.0, 2, 9, 12], [0, 0, 32, 24], [5, 5, 5, 5]]))
    program = torch.export.export(Paste(), args)
    torch.testing.assert_close(program.module()(*args), Paste()(*args))
