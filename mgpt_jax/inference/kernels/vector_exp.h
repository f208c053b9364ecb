// exp for the CPU kernels' softmax sums (attention.cc, greedy_choice.cc), 16 lanes at a time.
#ifndef MGPT_JAX_KERNELS_VECTOR_EXP_H_
#define MGPT_JAX_KERNELS_VECTOR_EXP_H_

#ifdef __AVX512F__
#include <immintrin.h>

namespace mgpt {

// exp(x) in the lanes of `live` where x >= -87, 0 elsewhere: below -87 exp is near float32's
// smallest normal, and such a weight adds nothing to a sum of at least 1 (the max's own).
// exp(x) = 2^j * p(r), j = round(x / ln 2), r = x - j ln 2 (in two parts), p of degree 6.
inline __m512 ExpAbove87(__m512 x, __mmask16 live) {
  const __m512 floor = _mm512_set1_ps(-87.f);
  live &= _mm512_cmp_ps_mask(x, floor, _CMP_GE_OQ);
  const __m512 xc = _mm512_max_ps(x, floor);
  const __m512 j = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(j, _mm512_set1_ps(0.693359375f), xc);
  r = _mm512_fnmadd_ps(j, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_maskz_mov_ps(live, _mm512_scalef_ps(p, j));
}

}  // namespace mgpt

#endif  // __AVX512F__
#endif  // MGPT_JAX_KERNELS_VECTOR_EXP_H_
