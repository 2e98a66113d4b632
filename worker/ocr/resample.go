package ocr

import (
	"image"
	"math"
)

// The two resamplers below compute, value for value, what golang.org/x/image/draw's
// ApproxBiLinear and CatmullRom give for an opaque *image.RGBA source with op Src (the
// pipeline used them through draw before; the recogniser's exact readings depend on the very
// bytes), and write each pixel straight into the model's input as normalised BGR planes
// through a lookup table: no intermediate image, no per-call weight tables or buffers left to
// the garbage collector, and rows that can be split between goroutines. Floating-point steps
// keep draw's explicit conversions, which forbid fused multiply-adds.

// planes is where resampled pixels go: three planes (B, G, R) of a float32 tensor, row
// stride stride, plane size plane, starting at off; lut[k] maps a byte to plane k's value.
type planes struct {
	out           []float32
	off           int
	stride, plane int
	lut           *[3][256]float32
}

func (p *planes) set(x, y int, r, g, b uint8) {
	i := p.off + y*p.stride + x
	p.out[i] = p.lut[0][b]
	p.out[p.plane+i] = p.lut[1][g]
	p.out[2*p.plane+i] = p.lut[2][r]
}

// opaqueIn says whether every pixel of src in r has alpha 0xff.
func opaqueIn(src *image.RGBA, r image.Rectangle) bool {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		i := src.PixOffset(r.Min.X, y)
		row := src.Pix[i : i+4*r.Dx()]
		for j := 3; j < len(row); j += 4 {
			if row[j] != 0xff {
				return false
			}
		}
	}
	return true
}

// ablAxis is ApproxBiLinear's sampling along one axis for one destination column or row:
// the two source indices and their weights.
type ablAxis struct {
	s0, s1       int
	frac0, frac1 float64
}

func ablAxes(dn, sn int) []ablAxis {
	scale := float64(sn) / float64(dn)
	last := int32(sn - 1)
	axes := make([]ablAxis, dn)
	for d := range axes {
		s := float64((float64(d)+0.5)*scale) - 0.5
		s0 := int32(s)
		frac0 := s - float64(s0)
		frac1 := 1 - frac0
		s1 := s0 + 1
		if s < 0 {
			s0, s1 = 0, 0
			frac0, frac1 = 0, 1
		} else if s1 > last {
			s0, s1 = last, last
			frac0, frac1 = 1, 0
		}
		axes[d] = ablAxis{s0: int(s0), s1: int(s1), frac0: frac0, frac1: frac1}
	}
	return axes
}

// ablPlanes scales the sr part of src (opaque) to dw×dh as draw.ApproxBiLinear does and
// writes rows y0 to y1 into p. xs and ys are ablAxes(dw, sr.Dx()) and ablAxes(dh, sr.Dy()).
func ablPlanes(p *planes, src *image.RGBA, sr image.Rectangle, xs, ys []ablAxis, y0, y1 int) {
	base := src.PixOffset(sr.Min.X, sr.Min.Y)
	for dy := y0; dy < y1; dy++ {
		ay := ys[dy]
		r0 := src.Pix[base+ay.s0*src.Stride:]
		r1 := src.Pix[base+ay.s1*src.Stride:]
		for dx, ax := range xs {
			i0, i1 := 4*ax.s0, 4*ax.s1
			var v [3]uint8
			for c := range 3 {
				s00 := float64(uint32(r0[i0+c]) * 0x101)
				s10 := float64(uint32(r0[i1+c]) * 0x101)
				s01 := float64(uint32(r1[i0+c]) * 0x101)
				s11 := float64(uint32(r1[i1+c]) * 0x101)
				s10 = float64(ax.frac1*s00) + float64(ax.frac0*s10)
				s11 = float64(ax.frac1*s01) + float64(ax.frac0*s11)
				s11 = float64(ay.frac1*s10) + float64(ay.frac0*s11)
				v[c] = uint8(uint32(s11) >> 8)
			}
			p.set(dx, dy, v[0], v[1], v[2])
		}
	}
}

// catmullRom is draw.CatmullRom's kernel.
func catmullRom(t float64) float64 {
	if t < 1 {
		return float64((float64(1.5*t)-2.5)*t*t) + 1
	}
	return float64((float64(float64(float64(-0.5*t)+2.5)*t)-4)*t) + 2
}

// kernelAxis is one destination column or row of a kernel resampling: its taps (source
// index and weight) and the inverse of their total weight, as draw's distrib holds them.
type kernelAxis struct {
	i, j         int // taps[i:j]
	inv, invFFFF float64
}

type kernelTap struct {
	s int
	w float64
}

// catmullRomAxes distributes sn source columns (or rows) over dn destination ones with the
// Catmull-Rom kernel, as draw's newDistrib does; taps is reused.
func catmullRomAxes(dn, sn int, axes []kernelAxis, taps []kernelTap) ([]kernelAxis, []kernelTap) {
	const support = 2
	scale := float64(sn) / float64(dn)
	halfWidth, argScale := float64(support), 1.0
	if scale > 1 {
		halfWidth *= scale
		argScale = 1 / scale
	}
	axes, taps = axes[:0], taps[:0]
	for d := range dn {
		center := float64((float64(d)+0.5)*scale) - 0.5
		lo := int32(math.Floor(center - halfWidth))
		if lo < 0 {
			lo = 0
		}
		hi := int32(math.Ceil(center + halfWidth))
		if hi > int32(sn) {
			hi = int32(sn)
			if hi < lo {
				hi = lo
			}
		}
		total := 0.0
		first := len(taps)
		for s := lo; s < hi; s++ {
			t := math.Abs((center - float64(s)) * argScale)
			if t >= support {
				continue
			}
			w := catmullRom(t)
			if w == 0 {
				continue
			}
			total += w
			taps = append(taps, kernelTap{int(s), w})
		}
		total = 1 / total
		axes = append(axes, kernelAxis{i: first, j: len(taps), inv: total, invFFFF: total / 0xffff})
	}
	return axes, taps
}

// crScratch holds catmullRomPlanes' tables and buffer between calls.
type crScratch struct {
	xs, ys     []kernelAxis
	xTaps      []kernelTap
	yTaps      []kernelTap
	tmp        [][4]float64
	alphaByCol []float64
}

// catmullRomPlanes scales the sr part of src (opaque) to dw×dh as draw.CatmullRom does with
// op Src and writes it into p.
func catmullRomPlanes(p *planes, src *image.RGBA, sr image.Rectangle, dw, dh int, z *crScratch) {
	sw, sh := sr.Dx(), sr.Dy()
	z.xs, z.xTaps = catmullRomAxes(dw, sw, z.xs, z.xTaps)
	z.ys, z.yTaps = catmullRomAxes(dh, sh, z.ys, z.yTaps)
	if cap(z.tmp) < dw*sh {
		z.tmp = make([][4]float64, dw*sh)
	}
	tmp := z.tmp[:dw*sh]
	// Horizontal pass: each source row spread over the destination columns. Alpha is 0xff
	// everywhere, so its column sums depend on the column alone.
	if cap(z.alphaByCol) < dw {
		z.alphaByCol = make([]float64, dw)
	}
	alpha := z.alphaByCol[:dw]
	for dx, a := range z.xs {
		var pa float64
		for _, c := range z.xTaps[a.i:a.j] {
			pa += float64(float64(0xffff) * c.w)
		}
		alpha[dx] = pa * a.invFFFF
	}
	t := 0
	for y := range sh {
		row := src.Pix[src.PixOffset(sr.Min.X, sr.Min.Y+y):]
		for dx, a := range z.xs {
			var pr, pg, pb float64
			for _, c := range z.xTaps[a.i:a.j] {
				px := row[4*c.s:]
				pr += float64(float64(uint32(px[0])*0x101) * c.w)
				pg += float64(float64(uint32(px[1])*0x101) * c.w)
				pb += float64(float64(uint32(px[2])*0x101) * c.w)
			}
			tmp[t] = [4]float64{pr * a.invFFFF, pg * a.invFFFF, pb * a.invFFFF, alpha[dx]}
			t++
		}
	}
	// Vertical pass, clamped to alpha as draw clamps premultiplied colour.
	for dx := range dw {
		for dy, a := range z.ys {
			var pr, pg, pb, pa float64
			for _, c := range z.yTaps[a.i:a.j] {
				q := &tmp[c.s*dw+dx]
				pr += float64(q[0] * c.w)
				pg += float64(q[1] * c.w)
				pb += float64(q[2] * c.w)
				pa += float64(q[3] * c.w)
			}
			pr, pg, pb = min(pr, pa), min(pg, pa), min(pb, pa)
			p.set(dx, dy, uint8(ftou(pr*a.inv)>>8), uint8(ftou(pg*a.inv)>>8), uint8(ftou(pb*a.inv)>>8))
		}
	}
}

// ftou is draw's: [0, 1] to [0, 0xffff], rounded and clamped.
func ftou(f float64) uint16 {
	i := int32(float64(0xffff*f) + 0.5)
	if i > 0xffff {
		return 0xffff
	}
	if i > 0 {
		return uint16(i)
	}
	return 0
}
