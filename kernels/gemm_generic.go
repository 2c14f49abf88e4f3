package kernels

import "unsafe"

var genericImpl = impl{name: "generic", mr: 4, nr: 4, kernel: sgemmKernelGeneric}

// sgemmKernelGeneric is the portable 4×4 micro-kernel.
func sgemmKernelGeneric(kc int, a, b, c *float32, ldc int, acc bool) {
	var c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33 float32
	pa, pb := unsafe.Pointer(a), unsafe.Pointer(b)
	for kk := 0; kk < kc; kk++ {
		av := (*[4]float32)(unsafe.Add(pa, 16*kk)) // packed panels hold 4 floats per k
		bv := (*[4]float32)(unsafe.Add(pb, 16*kk))
		a0, a1, a2, a3 := av[0], av[1], av[2], av[3]
		b0, b1, b2, b3 := bv[0], bv[1], bv[2], bv[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
	}
	cs := unsafe.Slice(c, 3*ldc+4)
	rows := [4][4]float32{{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23}, {c30, c31, c32, c33}}
	for r := 0; r < 4; r++ {
		dst := cs[r*ldc : r*ldc+4 : r*ldc+4]
		if acc {
			dst[0] += rows[r][0]
			dst[1] += rows[r][1]
			dst[2] += rows[r][2]
			dst[3] += rows[r][3]
		} else {
			dst[0], dst[1], dst[2], dst[3] = rows[r][0], rows[r][1], rows[r][2], rows[r][3]
		}
	}
}
