/* Minimal table-driven test harness: CHECK records a pass or a failure with its location; the
 * runner prints one "N passed, N failed" line and exits non-zero on any failure. */
#ifndef FD_CHECK_H
#define FD_CHECK_H
#include <math.h>
#include <stdio.h>

static int fd_n_pass, fd_n_fail;

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (cond) {                                                                              \
            fd_n_pass++;                                                                         \
        }                                                                                        \
        else {                                                                                   \
            fd_n_fail++;                                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);            \
        }                                                                                        \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                    \
    do {                                                                                         \
        double fd_a_ = (a), fd_b_ = (b);                                                         \
        if (fabs(fd_a_ - fd_b_) <= (tol) || (fd_a_ == fd_b_)) {                                  \
            fd_n_pass++;                                                                         \
        }                                                                                        \
        else {                                                                                   \
            fd_n_fail++;                                                                         \
            fprintf(stderr, "%s:%d: %s = %.9g, expected %s = %.9g (tol %g)\n", __FILE__,        \
                    __LINE__, #a, fd_a_, #b, fd_b_, (double)(tol));                              \
        }                                                                                        \
    } while (0)

#define CHECK_REPORT(name)                                                                       \
    do {                                                                                         \
        printf("%s: %d passed, %d failed\n", name, fd_n_pass, fd_n_fail);                        \
        return fd_n_fail ? 1 : 0;                                                                \
    } while (0)

#endif
