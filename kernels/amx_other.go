//go:build !amd64

package kernels

func hasAMX() bool { return false }

func amxImpl() impl { panic("kernels: no AMX on this architecture") }

func cvtRow(dst []uint16, src []float32)                            { panic("kernels: no AMX") }
func pairRow(dst []uint16, src0, src1 []float32)                    { panic("kernels: no AMX") }
func transposeCvt16(dst []uint16, ldd int, src []float32, lds int)  { panic("kernels: no AMX") }
func transposeWords16(dst []uint16, ldd int, src []uint16, lds int) { panic("kernels: no AMX") }

func amxRow(a []uint16, lda int, b []uint16, ldb int, chunks, blocks int, c []float32, ldc int, load bool) {
	panic("kernels: no AMX")
}
