package kernels

// packB packs the micro-panels [plo, phi) of the current kc×nc block of
// op(B) into dst, each kc×nr, zero-padded on the right.
func (g *gemmArgs) packB(dst []float32, plo, phi int) {
	nr, kc := g.im.nr, g.kc
	for pn := plo; pn < phi; pn++ {
		jr := pn * nr
		cols := min(nr, g.nc-jr)
		d := dst[pn*kc*nr : (pn+1)*kc*nr]
		j := g.j0 + jr
		if !g.tB {
			src := g.b[g.p0*g.ldb+j:]
			switch {
			case cols == 32 && nr == 32 && g.im.copyPanel != nil:
				_ = src[(kc-1)*g.ldb+31]
				g.im.copyPanel(&d[0], &src[0], g.ldb, kc)
			case cols == 32 && nr == 32:
				for kk := 0; kk < kc; kk++ {
					*(*[32]float32)(d[kk*32:]) = *(*[32]float32)(src[kk*g.ldb:])
				}
			case cols == 16 && nr == 16:
				for kk := 0; kk < kc; kk++ {
					*(*[16]float32)(d[kk*16:]) = *(*[16]float32)(src[kk*g.ldb:])
				}
			default:
				for kk := 0; kk < kc; kk++ {
					row := d[kk*nr : kk*nr+nr]
					copy(row, src[kk*g.ldb:kk*g.ldb+cols])
					clear(row[cols:])
				}
			}
			continue
		}
		k0 := 0 // op(B)'s rows [0, k0) of the block are packed already
		if cols == 32 && nr == 32 && g.im.transpose16 != nil {
			for ; k0+16 <= kc; k0 += 16 {
				for half := 0; half < 32; half += 16 {
					src := g.b[(j+half)*g.ldb+g.p0+k0:]
					_ = src[15*g.ldb+15]
					g.im.transpose16(&d[k0*32+half], 32, &src[0], g.ldb)
				}
			}
		}
		if cols < nr {
			clear(d)
		}
		for jj := 0; jj < cols; jj++ {
			src := g.b[(j+jj)*g.ldb+g.p0+k0 : (j+jj)*g.ldb+g.p0+kc]
			for kk, v := range src {
				d[(k0+kk)*nr+jj] = v
			}
		}
	}
}

// packA packs rows [i0, i0+mc) of the current k block of op(A) into dst as
// micro-panels of mr rows, each kc×mr, zero-padded at the bottom.
func (g *gemmArgs) packA(dst []float32, i0, mc int) {
	mr, kc := g.im.mr, g.kc
	for ir := 0; ir < mc; ir += mr {
		rows := min(mr, mc-ir)
		d := dst[ir*kc : ir*kc+kc*mr]
		i := i0 + ir
		if g.tA {
			src := g.a[g.p0*g.lda+i:]
			switch {
			case rows == 12 && mr == 12:
				for kk := 0; kk < kc; kk++ {
					*(*[12]float32)(d[kk*12:]) = *(*[12]float32)(src[kk*g.lda:])
				}
			case rows == 6 && mr == 6:
				for kk := 0; kk < kc; kk++ {
					*(*[6]float32)(d[kk*6:]) = *(*[6]float32)(src[kk*g.lda:])
				}
			default:
				for kk := 0; kk < kc; kk++ {
					col := d[kk*mr : kk*mr+mr]
					copy(col, src[kk*g.lda:kk*g.lda+rows])
					clear(col[rows:])
				}
			}
			continue
		}
		if rows == 12 && mr == 12 {
			packRows12(d, g.a[i*g.lda+g.p0:], g.lda, kc)
			continue
		}
		if rows < mr {
			clear(d)
		}
		for r := 0; r < rows; r++ {
			src := g.a[(i+r)*g.lda+g.p0 : (i+r)*g.lda+g.p0+kc]
			for kk, v := range src {
				d[kk*mr+r] = v
			}
		}
	}
}

// packRows12 transposes 12 rows of kc floats, lda apart in a, into d as kc
// groups of 12.
func packRows12(d, a []float32, lda, kc int) {
	r0, r1, r2, r3 := a[:kc], a[lda:lda+kc], a[2*lda:2*lda+kc], a[3*lda:3*lda+kc]
	r4, r5, r6, r7 := a[4*lda:4*lda+kc], a[5*lda:5*lda+kc], a[6*lda:6*lda+kc], a[7*lda:7*lda+kc]
	r8, r9, r10, r11 := a[8*lda:8*lda+kc], a[9*lda:9*lda+kc], a[10*lda:10*lda+kc], a[11*lda:11*lda+kc]
	d = d[:12*kc]
	for kk := range r0 {
		c := (*[12]float32)(d[kk*12:])
		c[0], c[1], c[2], c[3] = r0[kk], r1[kk], r2[kk], r3[kk]
		c[4], c[5], c[6], c[7] = r4[kk], r5[kk], r6[kk], r7[kk]
		c[8], c[9], c[10], c[11] = r8[kk], r9[kk], r10[kk], r11[kk]
	}
}
