package ocr

import (
	"fmt"
	"image"
	"math/rand/v2"
	"testing"

	"golang.org/x/image/draw"
)

// TestResampleMatchesDraw checks that ablPlanes and catmullRomPlanes give, value for value,
// what draw.ApproxBiLinear and draw.CatmullRom (op Src) give on opaque RGBA images, then
// normalised: shrinking, growing, the same size, and from a part of a larger image.
func TestResampleMatchesDraw(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	src := image.NewRGBA(image.Rect(3, 5, 3+401, 5+157)) // a Rect not at the origin
	for i := range src.Pix {
		src.Pix[i] = uint8(rng.IntN(256))
		if i%4 == 3 {
			src.Pix[i] = 0xff
		}
	}
	// Text-like runs of ink and paper as well as noise: overshoot and clamping show there.
	for y := src.Rect.Min.Y + 40; y < src.Rect.Min.Y+80; y++ {
		for x := src.Rect.Min.X; x < src.Rect.Max.X; x++ {
			v := uint8(0xff)
			if (x/3+y/4)%3 == 0 {
				v = 0
			}
			i := src.PixOffset(x, y)
			src.Pix[i], src.Pix[i+1], src.Pix[i+2] = v, v, v
		}
	}
	parts := []image.Rectangle{src.Rect, image.Rect(20, 30, 220, 70), image.Rect(100, 41, 140, 91)}
	sizes := [][2]int{{32, 32}, {96, 32}, {640, 224}, {1000, 48}, {40, 50}, {401, 157}, {7, 3}}
	for _, sr := range parts {
		for _, sz := range sizes {
			dw, dh := sz[0], sz[1]
			t.Run(fmt.Sprintf("%v→%dx%d", sr, dw, dh), func(t *testing.T) {
				check := func(name string, interp draw.Interpolator, got []float32) {
					t.Helper()
					want := image.NewRGBA(image.Rect(0, 0, dw, dh))
					interp.Scale(want, want.Rect, src, sr, draw.Src, nil)
					for y := range dh {
						for x := range dw {
							px := want.Pix[want.PixOffset(x, y):]
							i := y*dw + x
							if got[i] != recLUT[0][px[2]] || got[dw*dh+i] != recLUT[0][px[1]] || got[2*dw*dh+i] != recLUT[0][px[0]] {
								t.Fatalf("%s: pixel (%d, %d) is %v, draw gives RGB %v", name, x, y,
									[3]float32{got[2*dw*dh+i], got[dw*dh+i], got[i]}, px[:3])
							}
						}
					}
				}
				out := make([]float32, 3*dw*dh)
				p := &planes{out: out, stride: dw, plane: dw * dh, lut: &recLUT}
				ablPlanes(p, src, sr, ablAxes(dw, sr.Dx()), ablAxes(dh, sr.Dy()), 0, dh)
				check("ApproxBiLinear", draw.ApproxBiLinear, out)
				clear(out)
				var z crScratch
				catmullRomPlanes(p, src, sr, dw, dh, &z)
				catmullRomPlanes(p, src, sr, dw, dh, &z) // again, with z's buffers reused
				check("CatmullRom", draw.CatmullRom, out)
			})
		}
	}
}
