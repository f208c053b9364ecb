"""T2M evaluation metrics (retrieval, distribution, trajectory) against hand-computed values."""
import numpy as np
import pytest

from mgpt_jax.eval.metrics import distribution as D
from mgpt_jax.eval.metrics import retrieval as R
from mgpt_jax.eval.metrics import trajectory as TR


# ---------------------------------------------------------------- retrieval

# 1-D embeddings, group_size 3: two full groups + one remainder pair that must be dropped.
# Group 1 matches perfectly. Group 2 (motions 10, 30, 21): text 0 -> own at rank 1,
# text 10 -> distances [0, 20, 11], own at rank 3; text 20 -> distances [10, 10, 1], rank 1.
_TEXT = np.array([0., 10., 20., 0., 10., 20., 0.])[:, None]
_MOTION = np.array([0., 10., 20., 10., 30., 21., 100.])[:, None]


def test_euclidean_distance_matrix():
  a = np.array([[0., 0.], [3., 4.]])
  b = np.array([[0., 0.], [6., 8.], [3., 0.]])
  np.testing.assert_allclose(R.euclidean_distance_matrix(a, b), [[0, 10, 3], [5, 5, 4]], atol=1e-12)


def test_r_precision_hand_ranks():
  np.testing.assert_allclose(R.r_precision(_TEXT, _MOTION, top_k=3, group_size=3), [5 / 6, 5 / 6, 1.0])


def test_r_precision_perfect_and_shuffled():
  emb = np.random.default_rng(0).normal(size=(70, 8))
  np.testing.assert_allclose(R.r_precision(emb, emb), [1, 1, 1])
  np.testing.assert_allclose(R.r_precision(emb, emb, rng=np.random.default_rng(1)), [1, 1, 1])


def test_matching_score():
  assert R.matching_score(_TEXT, _MOTION) == pytest.approx(131 / 7)
  # Grouped like R-precision: the remainder pair (distance 100) is dropped.
  assert R.matching_score(_TEXT, _MOTION, group_size=3) == pytest.approx(31 / 6)


def test_retrieval_bad_shapes():
  with pytest.raises(ValueError, match="pair up"):
    R.r_precision(np.zeros((40, 4)), np.zeros((40, 5)))
  with pytest.raises(ValueError, match="at least group_size"):
    R.r_precision(np.zeros((31, 4)), np.zeros((31, 4)))
  with pytest.raises(ValueError, match=r"\(N, D\)"):
    R.matching_score(np.zeros(4), np.zeros(4))
  with pytest.raises(ValueError, match="same D"):
    R.euclidean_distance_matrix(np.zeros((2, 3)), np.zeros((2, 4)))


# ------------------------------------------------------------- distribution

def test_activation_statistics():
  mu, sigma = D.activation_statistics([[1.], [3.]])
  np.testing.assert_allclose(mu, [2.])
  np.testing.assert_allclose(sigma, [[2.]])  # unbiased: ((-1)^2 + 1^2) / 1


def test_fid_identical_is_zero():
  x = np.random.default_rng(0).normal(size=(50, 4))
  assert abs(D.fid(x, x)) < 1e-8


def test_fid_1d_gaussians_closed_form():
  # a: mean 2, var 2; b: mean 4, var 16  ->  (2-4)^2 + 2 + 16 - 2 sqrt(2 * 16)
  expected = 4 + 2 + 16 - 2 * np.sqrt(32)
  assert D.fid(np.array([[1.], [3.]]), np.array([[0.], [4.], [8.]])) == pytest.approx(expected)
  # Diagonal covariances: the distance adds up per dimension.
  got = D.frechet_distance([0, 1], np.diag([1., 4.]), [1, 1], np.diag([9., 1.]))
  assert got == pytest.approx(1 + (1 + 9 - 2 * 3) + (4 + 1 - 2 * 2))


def test_frechet_distance_singular_covariance():
  # Rank-1 covariances: sqrtm of a singular product; the result must still be finite and ~0.
  sigma = np.array([[1., 1.], [1., 1.]])
  assert abs(D.frechet_distance([0, 0], sigma, [0, 0], sigma)) < 1e-5


def test_diversity_known_distances():
  # Scaled basis vectors: every two distinct points are exactly 5 apart, a point from itself 0.
  n, times = 6, 6
  x = np.eye(n) * 5 / np.sqrt(2)
  check = np.random.default_rng(3)
  first, second = check.choice(n, times, replace=False), check.choice(n, times, replace=False)
  expected = 5 * np.mean(first != second)
  assert D.diversity(x, times=times, rng=np.random.default_rng(3)) == pytest.approx(expected)
  # Two points at distance 5, one pair drawn: either the same point (0) or the other (5).
  assert D.diversity([[0., 0.], [3., 4.]], times=1, rng=np.random.default_rng(0)) in (0.0, 5.0)


def test_multimodality_constructed():
  # Text 0: all repeats identical (0). Text 1: repeats on a line at 0, 1, 2, 3.
  x = np.zeros((2, 4, 1))
  x[1, :, 0] = [0, 1, 2, 3]
  check = np.random.default_rng(7)
  first, second = check.choice(4, 3, replace=False), check.choice(4, 3, replace=False)
  expected = (0 + np.mean(np.abs(first - second))) / 2
  assert D.multimodality(x, times=3, rng=np.random.default_rng(7)) == pytest.approx(expected)
  # Each text's repeats all equal but texts differ: no within-text spread at all.
  assert D.multimodality(np.broadcast_to([[[1.]], [[9.]]], (2, 3, 1)), times=3) == 0.0


def test_distribution_bad_shapes():
  with pytest.raises(ValueError, match="times"):
    D.diversity(np.zeros((10, 3)), times=300)
  with pytest.raises(ValueError, match="num_texts, num_repeats"):
    D.multimodality(np.zeros((10, 3)))
  with pytest.raises(ValueError, match="num_repeats"):
    D.multimodality(np.zeros((2, 5, 3)), times=10)
  with pytest.raises(ValueError, match="widths differ"):
    D.fid(np.zeros((5, 3)), np.zeros((5, 4)))
  with pytest.raises(ValueError, match="at least 2"):
    D.activation_statistics(np.zeros((1, 3)))
  with pytest.raises(ValueError, match="covariances"):
    D.frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))


# --------------------------------------------------------------- trajectory

def _errors_to_joints(errors):
  """(B, T) per-frame errors -> (B, T, 2, 3) joints whose flattened error has that norm:
  joint 0 off by 0.6 e along x, joint 1 by 0.8 e along y."""
  errors = np.asarray(errors, dtype=np.float64)
  joints = np.zeros(errors.shape + (2, 3))
  joints[..., 0, 0] = 0.6 * errors
  joints[..., 1, 1] = 0.8 * errors
  return joints


def test_ade_fde_skips_prefix_and_padding():
  # seq 0: length 5, start 2 -> frames 2..4 errors [1, 2, 3]: ADE 2, FDE 3.
  # seq 1: length 3, start 1 -> frames 1..2 errors [2, 4]: ADE 3, FDE 4; frames 3, 4 are padding.
  errors = [[9, 9, 1, 2, 3], [9, 2, 4, 100, 100]]
  pred, gt = _errors_to_joints(errors), np.zeros((2, 5, 2, 3))
  ade, fde = TR.ade_fde(pred, gt, lengths=[5, 3], start_frames=[2, 1])
  assert (ade, fde) == pytest.approx((2.5, 3.5))
  assert TR.ade_fde_mm(pred, gt, lengths=[5, 3], start_frames=[2, 1]) == pytest.approx((2500., 3500.))


def test_ade_fde_inbetween_mask():
  # L = 8, ratio 0.25 -> frames [2, 6) scored; L = 4 -> [1, 3). The rest (kept or padding) is not.
  mask = TR.inbetween_mask([8, 4], 8)
  np.testing.assert_array_equal(mask, [[0, 0, 1, 1, 1, 1, 0, 0], [0, 1, 1, 0, 0, 0, 0, 0]])
  errors = [[50, 50, 1, 1, 1, 5, 50, 50], [50, 2, 6, 50, 50, 50, 50, 50]]
  ade, fde = TR.ade_fde(_errors_to_joints(errors), np.zeros((2, 8, 2, 3)), mask=mask)
  assert ade == pytest.approx((2 + 4) / 2)
  assert fde == pytest.approx((5 + 6) / 2)


def test_prediction_mask():
  np.testing.assert_array_equal(TR.prediction_mask([10, 5], 10)[:, :4], [[0, 0, 1, 1], [0, 1, 1, 1]])
  assert TR.prediction_mask([10, 5], 10).sum(1).tolist() == [8, 4]


def test_trajectory_bad_inputs():
  z = np.zeros((2, 5, 2, 3))
  with pytest.raises(ValueError, match="share"):
    TR.ade_fde(z, np.zeros((2, 4, 2, 3)), lengths=[5, 5])
  with pytest.raises(ValueError, match="exactly one"):
    TR.ade_fde(z, z)
  with pytest.raises(ValueError, match="boolean"):
    TR.ade_fde(z, z, mask=np.ones((2, 5)))
  with pytest.raises(ValueError, match="no frames"):
    TR.ade_fde(z, z, lengths=[5, 2], start_frames=[0, 2])
  with pytest.raises(ValueError, match="lengths must lie"):
    TR.ade_fde(z, z, lengths=[6, 5])
  with pytest.raises(ValueError, match=r"lengths must be \(2,\)"):
    TR.ade_fde(z, z, lengths=[5, 5, 5])


# ---------------------------------------------------------------- joint errors of the recon task

def test_recon_joint_errors_batched_equal_each_clip_alone():
  """The recon task scores clips of mixed lengths padded into one call; each clip's values
  equal its own unpadded ones, and a hand case: a pure 2-unit shift of a 2-frame clip."""
  from mgpt_jax.eval.metrics import joints as J
  from mgpt_jax.eval.protocol.tasks import _joint_errors
  rng = np.random.default_rng(0)
  target = [rng.normal(size=(n, 22, 3)) for n in (7, 40, 70)]
  predicted = [t + 0.1 * rng.normal(size=t.shape) for t in target]
  shift = np.zeros((2, 22, 3))
  shift[:, 1:, 0] = 1.0
  target.append(shift)
  predicted.append(shift + np.array([0.0, 0.0, 2.0]) * (np.arange(22) > 0)[None, :, None])
  got = _joint_errors(predicted, target)
  for i, (p, t) in enumerate(zip(predicted, target)):
    np.testing.assert_allclose(got["mpjpe_mm"][i], J.mpjpe(p, t), rtol=1e-5)
    np.testing.assert_allclose(got["pa_mpjpe_mm"][i], J.pa_mpjpe(p, t), rtol=1e-4, atol=1e-6)
    if len(p) > 2:
      np.testing.assert_allclose(got["accl_mm"][i], J.acceleration_error(p, t), rtol=1e-5)
  assert got["mpjpe_mm"][3] == pytest.approx(2.0 * 21 / 22, rel=1e-6)  # 21 of 22 joints moved by 2


# ---------------------------------------------------------------- paired comparison

def test_mcnemar_hand_cases_and_binomial_test():
  from scipy import stats
  from mgpt_jax.eval.metrics.paired import mcnemar
  # 3 discordant items, all for a: p = 2 * (1/2)^3
  assert mcnemar([1, 1, 1, 0, 1], [0, 0, 0, 0, 1]) == {"only_a": 3, "only_b": 0, "p": 0.25}
  assert mcnemar([1, 0], [0, 1])["p"] == 1.0 and mcnemar([1, 1], [1, 1])["p"] == 1.0
  a = [True] * 132 + [False] * 86 + [True] * 900
  b = [False] * 132 + [True] * 86 + [True] * 900
  got = mcnemar(a, b)
  assert (got["only_a"], got["only_b"]) == (132, 86)
  assert got["p"] == pytest.approx(stats.binomtest(86, 218, 0.5).pvalue, rel=1e-9)
  with pytest.raises(ValueError, match="one per item"):
    mcnemar([True], [True, False])
