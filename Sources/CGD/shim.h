#ifndef LATCHKEY_CGD_SHIM_H
#define LATCHKEY_CGD_SHIM_H
#include <stdarg.h>
#include <gd.h>

/* libgd reports decode problems on stderr through a variadic callback Swift
   cannot implement; the wrapper reports failures itself, so silence it. */
static void lk_gd_silent(int priority, const char *format, va_list args) {
    (void)priority; (void)format; (void)args;
}
static inline void lk_gd_quiet(void) { gdSetErrorMethod(lk_gd_silent); }

/* A decode may take 16 MiB in malloc'd rows; give freed memory back to the
   system at once, so a burst of uploads leaves no lasting RSS (glibc keeps
   freed arena memory otherwise). malloc.h is not in Swift's Glibc module. */
#include <malloc.h>
static inline void lk_release_freed_memory(void) { (void)malloc_trim(0); }

/* glibc raises its mmap threshold each time a large mmapped block is freed,
   after which 16 MiB blocks (a logo decode, an scrypt hash) come from the
   heap and stay in the process when freed. A fixed threshold keeps every
   allocation of `bytes` or more in its own mapping, returned at free. */
static inline int lk_fixed_mmap_threshold(int bytes) { return mallopt(M_MMAP_THRESHOLD, bytes); }

/* gdImageSX/SY are macros. */
static inline int lk_gd_width(gdImagePtr im) { return gdImageSX(im); }
static inline int lk_gd_height(gdImagePtr im) { return gdImageSY(im); }
#endif
