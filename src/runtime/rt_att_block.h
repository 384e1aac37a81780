/* A template, included by rt_ops_body.h only, once per vector width RT_AW (floats): the
 * attention's blocks with vectors of RT_AW floats (GCC vector extension: elementwise IEEE
 * operations, the same bits at every width). Defines rt_att_scores_<RT_AW> and
 * rt_att_block_<RT_AW>. No include guard: it is meant to be included several times. */

typedef float RT_CAT(rt_att_vec, RT_AW) __attribute__((vector_size(4 * RT_AW)));
#define RT_AV RT_CAT(rt_att_vec, RT_AW)

/* Scores of QB queries × NV·RT_AW keys from j0 (QB <= RT_QB, NV <= 8: constants once inlined),
 * each one sum over d in order, times scale. */
RT_INLINE void RT_CAT(rt_att_scores, RT_AW)(float *sc, const float *const *q, const float *kt, int Tp, int hd, int j0,
                                            float scale, const int QB, const int NV) {
    RT_AV acc[RT_QB][8];
    _Pragma("GCC unroll 8") for (int ii = 0; ii < QB; ii++)
        _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++) acc[ii][v] = (RT_AV){0};
    for (int d = 0; d < hd; d++) {
        RT_AV kd[8];
        _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)
            memcpy(&kd[v], kt + (long)d * Tp + j0 + RT_AW * v, sizeof kd[v]);
        _Pragma("GCC unroll 8") for (int ii = 0; ii < QB; ii++) {
            const float qd = q[ii][d];
            _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++) acc[ii][v] += qd * kd[v];
        }
    }
    _Pragma("GCC unroll 8") for (int ii = 0; ii < QB; ii++)
        _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++) {
            const RT_AV r = acc[ii][v] * scale;
            memcpy(sc + (long)ii * Tp + j0 + RT_AW * v, &r, sizeof r);
        }
}

/* Queries [i0, i0 + qb) of head h (qb <= QB): their scores in blocks of NK vectors of keys
 * (each key row of kt loaded serves QB queries), the softmax, then the outputs in blocks of
 * NO vectors of columns (each value row loaded serves QB queries), no partial sum read back
 * from memory per term. Every score is one sum over d in order and every output one sum over
 * the keys in order, whatever the blocks: the same bits in every set. A last block of at most
 * 16 keys, where NK vectors hold 32, computes 16 (ViT-Tiny's 197 keys: 208 scores a row). */
RT_INLINE void RT_CAT(rt_att_block, RT_AW)(float *out, const float *qkv, int T, int Tp, int D, int hd, int h, int i0,
                                           int qb, float *sc, const float *kt, float scale, const int QB, const int NK,
                                           const int NO) {
    const int ld = 3 * D, KB = NK * RT_AW;
    const float *q[RT_QB];
    for (int ii = 0; ii < QB; ii++) q[ii] = qkv + (long)(i0 + (ii < qb ? ii : 0)) * ld + h * hd;
    for (int j0 = 0; j0 < T; j0 += KB)
        if (KB == 32 && T - j0 <= 16)
            RT_CAT(rt_att_scores, RT_AW)(sc, q, kt, Tp, hd, j0, scale, QB, NK / 2);
        else
            RT_CAT(rt_att_scores, RT_AW)(sc, q, kt, Tp, hd, j0, scale, QB, NK);
    float rinv[RT_QB];
    rt_att_softmax(sc, Tp, T, qb, rinv);
    const int OB = NO * RT_AW;
    int d0 = 0;
    for (; d0 + OB <= hd; d0 += OB) {
        RT_AV acc[RT_QB][8];
        _Pragma("GCC unroll 8") for (int ii = 0; ii < QB; ii++)
            _Pragma("GCC unroll 8") for (int v = 0; v < NO; v++) acc[ii][v] = (RT_AV){0};
        for (int j = 0; j < T; j++) {
            const float *vr = qkv + (long)j * ld + 2 * D + h * hd + d0;
            RT_AV vv[8];
            _Pragma("GCC unroll 8") for (int v = 0; v < NO; v++) memcpy(&vv[v], vr + RT_AW * v, sizeof vv[v]);
            _Pragma("GCC unroll 8") for (int ii = 0; ii < QB; ii++) {
                const float p = sc[(long)ii * Tp + j];
                _Pragma("GCC unroll 8") for (int v = 0; v < NO; v++) acc[ii][v] += p * vv[v];
            }
        }
        for (int ii = 0; ii < qb; ii++)
            _Pragma("GCC unroll 8") for (int v = 0; v < NO; v++) {
                const RT_AV r = acc[ii][v] * rinv[ii];
                memcpy(out + (long)(i0 + ii) * D + h * hd + d0 + RT_AW * v, &r, sizeof r);
            }
    }
    for (; d0 < hd; d0++) /* the columns past the last block: the same sums, one column at a time */
        for (int ii = 0; ii < qb; ii++) {
            float a = 0.0f;
            for (int j = 0; j < T; j++) a += sc[(long)ii * Tp + j] * qkv[(long)j * ld + 2 * D + h * hd + d0];
            out[(long)(i0 + ii) * D + h * hd + d0] = a * rinv[ii];
        }
}

#undef RT_AV
