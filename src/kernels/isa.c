/* Which vector width the kernels use, chosen once at run time: the build's baseline is AVX2 +
 * FMA (x86-64-v3); kernels with an AVX-512 version take it when the CPU has AVX-512F/DQ, unless
 * MVMOE_ISA=avx2 is set in the environment (or a test forces it). The AVX-512 versions compute
 * every element exactly as the AVX2 ones do (same polynomials, same operation order: GELU, and
 * the attention softmax, whose sums keep AVX2's 8 partial sums), so the choice never changes
 * a result of our own kernels, with one exception: the hd = 64 attention kernels
 * (attention_avx512.c) replace the AVX2 path's sgemm calls and agree with it to float
 * tolerance, not bit for bit. (oneDNN's GEMMs choose their own kernels by CPU, so their bits
 * already depend on the machine.) */
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "mvmoe.h"

static int isa_forced = 0; /* 0: not forced; else 256 or 512 */

int mvmoe_isa_width(void) {
    if (isa_forced) return isa_forced;
    static int width = 0; /* racing first calls compute the same value */
    if (!width) {
        const char *env = getenv("MVMOE_ISA");
        int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
        width = avx512 && !(env && strcmp(env, "avx2") == 0) ? 512 : 256;
    }
    return width;
}

int mvmoe_isa_force(int width) {
    int ok = width == 0 || width == 256 ||
             (width == 512 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq"));
    if (ok) isa_forced = width;
    return ok ? 0 : -1;
}

const char *mvmoe_kernel_isa(void) { return mvmoe_isa_width() == 512 ? "avx512" : "avx2"; }

/* VPDPBUSD (AVX-512 VNNI) for the int8 products: only where the AVX-512 versions run at all,
 * so MVMOE_ISA=avx2 (or mvmoe_isa_force(256)) also selects the plain-C int8 loop. Both give
 * the same int32 sums, hence the same results (linear_int8.c). */
int mvmoe_isa_vnni(void) {
    return mvmoe_isa_width() == 512 && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
}
