from __future__ import annotations

import pytest
import torch

from panoptic_perception.model.histogram import IdHistograms


@pytest.mark.parametrize("num_bins", [1, 2, 7, 52, 150])
def test_counts_and_weighted_sums_equal_scatter_reference(num_bins):
    gen = torch.Generator().manual_seed(num_bins)
    ids = torch.randint(0, num_bins, (37, 53), generator=gen)
    weights = torch.rand(37, 53, generator=gen)
    stats = IdHistograms(ids, num_bins)
    assert torch.equal(stats.counts().round().long(), torch.bincount(ids.flatten(), minlength=num_bins))
    want_sums = torch.zeros(num_bins, dtype=torch.float64).index_add_(0, ids.flatten(), weights.flatten().double())
    torch.testing.assert_close(stats.counts(weights).double(), want_sums, rtol=1e-5, atol=1e-4)


def test_histogram_exports_with_static_shapes():
    class Counts(torch.nn.Module):
        def forward(self, ids):
            return IdHistograms(ids, 20).counts()

    ids = torch.randint(0, 20, (16, 24))
    program = torch.export.export(Counts(), (ids,))
    other = torch.randint(0, 20, (16, 24))
    torch.testing.assert_close(program.module()(other), Counts()(other))
