/* Reference measurement, not part of the package: how fast can a plain hand-written kernel do
 * a decode step's weight matmuls on this CPU, compared with XLA's dots ("floor ms" in
 * benchmarks/sampler.py)?
 *
 *   gcc -O3 -march=native -fopenmp benchmarks/gemm_m16.c -o /tmp/gemm_m16 -lm
 *   OMP_NUM_THREADS=2 /tmp/gemm_m16          # 60 distinct [576, 1536] fp32 weights (212 MB)
 *   OMP_NUM_THREADS=2 /tmp/gemm_m16 1        # one weight reused: in cache, compute only
 *
 * y[16, N] = x[16, K] @ W with W pre-packed as [N/16][K][16] (each 16-column panel contiguous,
 * so the weight is read as one sequential stream), a 4-row x 16-column AVX2/FMA micro-kernel,
 * panels split over the OpenMP threads. Prints ms, GB/s of weights read and GFLOP/s for the
 * 60 matmuls, and the error against a double-precision reference on sampled outputs.
 * The same 60 dots through XLA are in docs/benchmarks.md (sampler section, sixth session).
 */
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { M = 16, K = 576, N = 1536, L = 60 };

static void panel(const float* x, const float* wp, float* y) {
  for (int r = 0; r < M; r += 4) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0,
           d1 = a0;
    const float *x0 = x + r * K, *x1 = x0 + K, *x2 = x1 + K, *x3 = x2 + K;
    for (int k = 0; k < K; ++k) {
      __m256 w0 = _mm256_load_ps(wp + 16 * k), w1 = _mm256_load_ps(wp + 16 * k + 8), v;
      v = _mm256_broadcast_ss(x0 + k);
      a0 = _mm256_fmadd_ps(v, w0, a0), a1 = _mm256_fmadd_ps(v, w1, a1);
      v = _mm256_broadcast_ss(x1 + k);
      b0 = _mm256_fmadd_ps(v, w0, b0), b1 = _mm256_fmadd_ps(v, w1, b1);
      v = _mm256_broadcast_ss(x2 + k);
      c0 = _mm256_fmadd_ps(v, w0, c0), c1 = _mm256_fmadd_ps(v, w1, c1);
      v = _mm256_broadcast_ss(x3 + k);
      d0 = _mm256_fmadd_ps(v, w0, d0), d1 = _mm256_fmadd_ps(v, w1, d1);
    }
    float* o = y + r * N;
    _mm256_storeu_ps(o, a0); _mm256_storeu_ps(o + 8, a1); o += N;
    _mm256_storeu_ps(o, b0); _mm256_storeu_ps(o + 8, b1); o += N;
    _mm256_storeu_ps(o, c0); _mm256_storeu_ps(o + 8, c1); o += N;
    _mm256_storeu_ps(o, d0); _mm256_storeu_ps(o + 8, d1);
  }
}

static void matmul(const float* x, const float* wp, float* y) {
#pragma omp parallel for schedule(static)
  for (int p = 0; p < N / 16; ++p) panel(x, wp + (size_t)p * K * 16, y + 16 * p);
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char** argv) {
  int distinct = argc > 1 ? atoi(argv[1]) : L;
  if (distinct < 1 || distinct > L) distinct = L;
  float* w[L];
  srand(0);
  for (int l = 0; l < distinct; ++l) {
    w[l] = aligned_alloc(64, (size_t)K * N * sizeof(float));
    for (size_t i = 0; i < (size_t)K * N; ++i) w[l][i] = (rand() % 200 - 100) * 1e-4f;
  }
  float* x = aligned_alloc(64, M * K * sizeof(float));
  float* y = aligned_alloc(64, M * N * sizeof(float));
  for (int i = 0; i < M * K; ++i) x[i] = (rand() % 200 - 100) * 1e-2f;
  double best = 1e9;
  for (int it = 0; it < 8; ++it) {
    double t = now();
    for (int l = 0; l < L; ++l) matmul(x, w[l % distinct], y);
    double dt = now() - t;
    if (dt < best) best = dt;
  }
  double err = 0;  /* y holds the last matmul's output */
  const float* wl = w[(L - 1) % distinct];
  for (int n = 0; n < N; n += 97)
    for (int r = 0; r < M; r += 5) {
      double s = 0;
      for (int k = 0; k < K; ++k)
        s += (double)x[r * K + k] * wl[(size_t)(n / 16) * K * 16 + 16 * k + n % 16];
      err = fmax(err, fabs(s - y[r * N + n]));
    }
  printf("%d matmuls [%d,%d]x[%d,%d], %d distinct weights: best %.1f ms, %.1f GB/s, "
         "%.1f GFLOP/s, max abs err %.2g\n", L, M, K, K, N, distinct, best * 1e3,
         (double)L * K * N * 4 / best / 1e9, (double)L * 2 * M * K * N / best / 1e9, err);
  return 0;
}
